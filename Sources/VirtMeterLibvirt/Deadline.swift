import Foundation
import Synchronization

/// Runs blocking libvirt calls on worker threads of their own and waits for them until a deadline.
///
/// A libvirt call cannot be cancelled. One that has not returned by the deadline is abandoned: the caller goes on
/// without it, and the worker thread stays with the call until libvirt returns it (a QEMU whose monitor does not
/// answer holds it until the process runs again). Only that thread is held: the other items are taken by the other
/// workers, and the next cycle starts workers of its own. What an abandoned item returns late is dropped; items
/// never return C memory, they turn what libvirt returned into Swift values on the worker and free it there, so
/// nothing leaks when nobody takes them. Whatever the work captures (the connection) stays alive until the last
/// abandoned item returns, and the work itself clears any in-flight marker it set.
final class DeadlineBatch<Item: Sendable, Output: Sendable>: Sendable {
    private struct State: Sendable {
        var next = 0
        var finished = 0
        var outputs: [Output?]
        var running: Set<Int> = []
        var abandoned = false
    }

    private let items: [Item]
    private let worker: @Sendable () -> (Item) -> Output
    private let state: Mutex<State>
    private let done = DispatchSemaphore(value: 0)

    private init(_ items: [Item], worker: @escaping @Sendable () -> (Item) -> Output) {
        self.items = items
        self.worker = worker
        state = Mutex(State(outputs: Array(repeating: nil, count: items.count)))
    }

    /// Runs `work` over `items` on up to `workers` threads and waits at most `seconds`. Returns each item's output,
    /// nil for the items that did not finish in time, and the items still running then (abandoned). Items not
    /// started by the deadline are not started at all.
    static func run(_ items: [Item], workers: Int, seconds: Double, work: @escaping @Sendable (Item) -> Output)
        -> (outputs: [Output?], abandoned: [Item]) {
        run(items, workers: workers, seconds: seconds, eachWorker: { work })
    }

    /// Like `run(_:workers:seconds:work:)`, with a work function of each worker's own: `eachWorker` runs on the
    /// worker's thread when it starts, and what it returns is called on that thread only (it may keep state, such as
    /// a connection of the worker's own).
    static func run(_ items: [Item], workers: Int, seconds: Double,
                    eachWorker: @escaping @Sendable () -> (Item) -> Output)
        -> (outputs: [Output?], abandoned: [Item]) {
        guard !items.isEmpty else { return ([], []) }
        let batch = DeadlineBatch(items, worker: eachWorker)
        for _ in 0..<max(1, min(workers, items.count)) {
            let thread = Thread { batch.drain() }
            thread.name = "virtmeter.libvirt.call"
            thread.start()
        }
        _ = batch.done.wait(timeout: .now() + .nanoseconds(Int(max(0, min(seconds, 86_400)) * 1e9)))
        return batch.state.withLock { state in
            state.abandoned = true
            return (state.outputs, state.running.sorted().map { batch.items[$0] })
        }
    }

    /// One worker: takes the next item until none is left or the batch was abandoned.
    private func drain() {
        let work = worker()
        while let index = state.withLock({ state -> Int? in
            guard !state.abandoned, state.next < items.count else { return nil }
            defer { state.next += 1 }
            state.running.insert(state.next)
            return state.next
        }) {
            let output = work(items[index])
            let allDone = state.withLock { state -> Bool in
                state.running.remove(index)
                if !state.abandoned { state.outputs[index] = output }
                state.finished += 1
                return state.finished == items.count
            }
            if allDone { done.signal() }
        }
    }
}
