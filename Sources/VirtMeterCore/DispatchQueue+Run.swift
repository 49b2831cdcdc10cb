import Dispatch

extension DispatchQueue {
    /// Runs `body` on this queue and returns its result to the caller's task: the one bridge between blocking work
    /// kept on a queue of its own (libvirt, librabbitmq, the spool's files) and async code, so that nothing blocks a
    /// thread of Swift's cooperative pool.
    package func run<T: Sendable, Failure: Error>(_ body: @escaping @Sendable () throws(Failure) -> T)
        async throws(Failure) -> T {
        let result: Result<T, Failure> = await withCheckedContinuation { continuation in
            self.async {
                do throws(Failure) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
