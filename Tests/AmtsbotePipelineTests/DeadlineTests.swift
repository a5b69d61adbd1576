import AmtsbotePipeline
import AmtsboteTestSupport
import Foundation
import Testing

/// `withDeadline`, which bounds every ledger call and every delivery attempt.
@Suite("Deadlines: a call that ends lets go of everything at once")
struct DeadlineTests {
    final class Payload: Sendable {}

    struct Late: Error {}

    @Test("a finished call's result is released right away, not when its (far) deadline would have passed")
    func finishedCallIsReleased() async throws {
        // A busy worker makes thousands of calls a second, each with a deadline of minutes: a timer that kept the
        // finished call until its deadline held every result for minutes (hundreds of MiB).
        weak var released: Payload?
        do {
            let payload = try await withDeadline(.seconds(3600), onTimeout: { Late() }) { Payload() }
            released = payload
        }
        // The timer's cancellation is handled on a Dispatch queue: wait for it (the guard only catches a hang; the
        // old timer held the result for the whole hour).
        try await waitUntil("the finished call's result is released") { released == nil }
    }

    @Test("a call that does not end in time is given up with the timeout error and cancelled")
    func timeout() async throws {
        let cancelled = Flag()
        await #expect(throws: Late.self) {
            try await withDeadline(.milliseconds(50), onTimeout: { Late() }) {
                await withTaskCancellationHandler {
                    try? await Task.sleep(for: .seconds(3600))
                } onCancel: { cancelled.set() }
            }
        }
        try await waitUntil("the abandoned call is cancelled") { cancelled.isSet }
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.lock(); value = true; lock.unlock() }
        var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    }
}
