import Foundation

/// Group commit on the client side: callers hand in one item each and wait for its result; while one batch is
/// being written, the items that arrive meanwhile gather and go in the next batch, in one statement and one
/// commit. A lone caller after a quiet spell is written at once; under load, batches start at most every
/// `minimumInterval` (a short linger), so many concurrent callers share statements and commits, whose cost is what
/// limits a queue's throughput.
public final class CommitBatcher<Item: Sendable, Result: Sendable>: @unchecked Sendable {
    public typealias Flush = @Sendable ([Item]) async throws -> [Result]

    // Safety: every access to the mutable state holds the lock.
    private let lock = NSLock()
    private var pending: [(Item, CheckedContinuation<Result, any Error>)] = []
    private var flushing = false
    private let maximum: Int
    private let minimumInterval: Duration
    private var lastStart: ContinuousClock.Instant?
    private let flush: Flush

    /// `flush` writes a batch and returns one result per item, in order; at most `maximum` items per batch, and a
    /// batch starts no sooner than `minimumInterval` after the one before.
    public init(maximum: Int = 256, minimumInterval: Duration = .zero, flush: @escaping Flush) {
        self.maximum = maximum
        self.minimumInterval = minimumInterval
        self.flush = flush
    }

    /// Adds `item` to the next batch and returns its result once that batch is written.
    public func submit(_ item: Item) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            lock.lock()
            pending.append((item, continuation))
            let start = !flushing
            flushing = true
            lock.unlock()
            if start { Task { await self.drain() } }
        }
    }

    /// The next batch, or nil (and flushing ends) when nothing is pending.
    private func nextBatch() -> [(Item, CheckedContinuation<Result, any Error>)]? {
        lock.lock(); defer { lock.unlock() }
        guard !pending.isEmpty else {
            flushing = false
            return nil
        }
        let batch = Array(pending.prefix(maximum))
        pending.removeFirst(batch.count)
        return batch
    }

    /// How long the next batch waits so that batches start at most every `minimumInterval` (zero after a quiet spell).
    private func linger() -> Duration {
        lock.lock(); defer { lock.unlock() }
        guard let lastStart, minimumInterval > .zero else { return .zero }
        let since = ContinuousClock.now - lastStart
        return since < minimumInterval ? minimumInterval - since : .zero
    }

    private func started() {
        lock.lock(); defer { lock.unlock() }
        lastStart = .now
    }

    /// Whether anything waits; when not, flushing ends (a later item starts the next drain).
    private func anyPending() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if pending.isEmpty { flushing = false }
        return !pending.isEmpty
    }

    private func drain() async {
        while anyPending() {
            let wait = linger()
            if wait > .zero { try? await Task.sleep(for: wait) }
            guard let batch = nextBatch() else { return }
            started()
            do {
                let results = try await flush(batch.map(\.0))
                for (index, entry) in batch.enumerated() {
                    if index < results.count { entry.1.resume(returning: results[index]) }
                    else { entry.1.resume(throwing: LedgerError(code: "ledger.unavailable", message: "no result for a batch item")) }
                }
            } catch {
                for entry in batch { entry.1.resume(throwing: error) }
            }
        }
    }
}
