import Dispatch

extension DispatchQueue {
    /// Runs `body` on this queue and returns its result to the caller's task: how the publisher and the consumer
    /// keep their connection on a queue of its own, off Swift's cooperative pool.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws(AMQPError) -> T) async throws(AMQPError) -> T {
        let result: Result<T, AMQPError> = await withCheckedContinuation { continuation in
            self.async {
                do throws(AMQPError) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }
}
