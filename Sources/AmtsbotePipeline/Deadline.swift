import Foundation

/// Runs `work`, and gives up on it after `limit` (nil: no limit) with the error `onTimeout` makes: the work is
/// cancelled and left to end on its own, so a call that never returns (a server that never answers, a connection
/// that died silently) cannot hold up its caller. Cancelling the caller cancels the work.
public func withDeadline<T: Sendable>(_ limit: Duration?, onTimeout: @escaping @Sendable () -> any Error,
                                      _ work: @escaping @Sendable () async throws -> T) async throws -> T {
    guard let limit else { return try await work() }
    let call = Task { try await work() }
    let outcome = FirstOutcome<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            outcome.install(continuation)
            // A Dispatch timer, not Task.sleep: it fires even when misbehaving work blocks the threads of Swift's
            // cooperative pool. A timer source, not asyncAfter: cancelling a source lets go of its handler (and the
            // finished call it holds) at once, where a cancelled asyncAfter item stays queued until its deadline,
            // which held every ledger call's result for minutes on a busy worker.
            let timer = DispatchSource.makeTimerSource(queue: .global())
            timer.schedule(deadline: .now() + limit.seconds)
            timer.setEventHandler {
                if outcome.resume(with: .failure(onTimeout())) { call.cancel() }
            }
            timer.resume()
            Task {
                let result = await call.result
                timer.cancel()
                outcome.resume(with: result)
            }
        }
    } onCancel: {
        call.cancel()
    }
}
