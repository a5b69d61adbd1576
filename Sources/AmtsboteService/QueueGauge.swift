import AmtsbotePipeline
import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// Reads the ledger's queue every ``IntakeServiceConfiguration/depthSampleInterval``: the depth that backpressure
/// compares with ``IntakeServiceConfiguration/maxQueueDepth``, the gauges of `/metrics`, and whether the ledger
/// answers (readiness).
final class QueueGauge: Service, @unchecked Sendable {
    private let ledger: any LedgerStore
    private let interval: Duration
    private let logger: Logger
    // Safety: every access to the readings holds the lock.
    private let lock = NSLock()
    private var pendingCount = 0
    private var lastSuccess: ContinuousClock.Instant?
    private var gauges: [SubmissionState: Gauge] = [:]
    private var postfachGauges: [String: (queued: Gauge, running: Gauge, oldestDue: Gauge)] = [:]
    private let oldestDue = Gauge(label: "amtsbote_queue_oldest_due_seconds")

    /// States of work not yet finished: what backpressure counts.
    static let pendingStates: [SubmissionState] = [.received, .validated, .queued, .running]

    init(ledger: any LedgerStore, interval: Duration, logger: Logger) {
        self.ledger = ledger
        self.interval = interval
        self.logger = logger
        for state in SubmissionState.allCases {
            gauges[state] = Gauge(label: "amtsbote_queue_depth", dimensions: [("state", state.rawValue)])
        }
    }

    /// Submissions received, validated, queued or running at the last reading.
    var pending: Int {
        lock.lock(); defer { lock.unlock() }
        return pendingCount
    }

    /// Whether the last reading succeeded within three intervals.
    var ledgerAnswers: Bool {
        lock.lock(); defer { lock.unlock() }
        guard let lastSuccess else { return false }
        return ContinuousClock.now - lastSuccess < interval * 3 + .seconds(1)
    }

    /// Reads the queue once, waiting at most two seconds for the ledger (a readiness probe must not hang).
    func sample() async {
        do {
            let ledger = ledger
            let (counts, postfaecher) = try await withDeadline(.seconds(2), onTimeout: {
                LedgerError(code: "ledger.unavailable", message: "no answer within 2 s")
            }) {
                (try await ledger.counts(), try await ledger.queueByPostfach())
            }
            record(postfaecher)
            note(pending: Self.pendingStates.reduce(0) { $0 + (counts[$1] ?? 0) })
            for (state, gauge) in gauges { gauge.record(counts[state] ?? 0) }
            let oldest = postfaecher.compactMap(\.oldestDue).min()
            oldestDue.record(max(0, oldest.map { Date().timeIntervalSince($0) } ?? 0))
        } catch {
            logger.warning("queue depth unreadable", metadata: ["code": "\((error as? LedgerError)?.code ?? "ledger.unavailable")"])
        }
    }

    /// `amtsbote_postfach_queue{postfach,state}` and `amtsbote_postfach_oldest_due_seconds{postfach}`; a Postfach
    /// whose queue emptied is set to 0 (it stays listed until the process ends).
    private func record(_ queues: [PostfachQueue]) {
        let now = Date()
        let seen = Set(queues.map(\.postfach))
        let gone = lock.withLock { Set(postfachGauges.keys).subtracting(seen) }
        for postfach in gone {
            let (queued, running, oldest) = gauges(for: postfach)
            [queued, running, oldest].forEach { $0.record(0) }
        }
        for queue in queues {
            let (queued, running, oldest) = gauges(for: queue.postfach)
            queued.record(queue.queued)
            running.record(queue.running)
            oldest.record(max(0, queue.oldestDue.map { now.timeIntervalSince($0) } ?? 0))
        }
    }

    private func gauges(for postfach: String) -> (queued: Gauge, running: Gauge, oldestDue: Gauge) {
        lock.withLock {
            if let known = postfachGauges[postfach] { return known }
            let made = (Gauge(label: "amtsbote_postfach_queue", dimensions: [("postfach", postfach), ("state", "queued")]),
                        Gauge(label: "amtsbote_postfach_queue", dimensions: [("postfach", postfach), ("state", "running")]),
                        Gauge(label: "amtsbote_postfach_oldest_due_seconds", dimensions: [("postfach", postfach)]))
            postfachGauges[postfach] = made
            return made
        }
    }

    private func note(pending: Int) {
        lock.lock(); defer { lock.unlock() }
        pendingCount = pending
        lastSuccess = .now
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await sample()
            try? await Task.sleep(for: interval)
        }
    }
}

/// Counts request bodies being read, up to a limit.
final class IntakeSlots: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var used = 0
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Takes a slot; false when all are taken.
    func take() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard used < limit else { return false }
        used += 1
        return true
    }

    func give() {
        lock.lock(); defer { lock.unlock() }
        used -= 1
    }
}
