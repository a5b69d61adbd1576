import AmtsbotePipeline
import AmtsbotePostgres
import AmtsboteTestSupport
import PostgresTestSupport
import Foundation
import Logging
import Postfach
import Testing

/// Leases of 1 s without heartbeat and a backend that takes 3 s on 1 % of its calls: those attempts outlive their
/// lease, other workers take the rows over, and the late outcomes are logged and change nothing.
@Suite("Fencing: an outcome after a lost lease never counts")
struct FencingTests {
    static let submissions = 400

    @Test("SQLite")
    func sqlite() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
        try await Self.run(ledger: ledger, payloads: FilesystemPayloadStore(), directory: directory)
    }

    @Test("PostgreSQL", .enabled(if: PostgresTestDatabase.enabled, Comment(rawValue: PostgresServer.unavailableReason)))
    func postgres() async throws {
        let database = try await PostgresTestDatabase.create()
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let ledger = try await database.open()
        let payloads = try PostgresPayloadStore(ledger: ledger, scratch: directory.appendingPathComponent("scratch"))
        try await Self.run(ledger: ledger, payloads: payloads, directory: directory)
        await ledger.close()
        await database.drop()
    }

    static func run(ledger: any LedgerStore, payloads: any PayloadStore, directory: URL) async throws {
        let recording = RecordingLedger(ledger)
        let backend = SlowSometimes(every: 100, takes: .seconds(3))
        let logs = CollectedLogs()
        var logger = Logger(label: "amtsbote.test.fencing") { _ in logs }
        logger.logLevel = .info
        let policy = RetryPolicy(maxAttempts: 100, initialDelay: .milliseconds(10), attemptTimeout: nil,
                                 lease: .seconds(1), heartbeat: nil)
        let pipeline = Pipeline(validator: Harness.validator, router: Harness.router, backends: BackendSelection(default: backend),
                                ledger: recording, spool: try Spool(directory: directory.appendingPathComponent("spool")),
                                payloads: payloads, retry: policy, deliversOnIntake: false, logger: logger)
        let inbox = directory.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        var queued = 0
        for name in try SampleSubmissions.write(count: submissions, into: inbox).indices {
            let row = try await pipeline.submit(file: inbox.appendingPathComponent(String(format: "antrag-%05d.xml", name)).path)
            #expect(row.state == .queued, "\(row.reasonCode ?? ""): \(row.reason ?? "")")
            if row.state == .queued { queued += 1 }
        }
        let expected = queued
        // Two workers share the queue; each also puts expired leases back (every poll). One claims a batch at a
        // time, the other single rows (on PostgreSQL four claims side by side).
        try await withThrowingTaskGroup(of: DeliveryWorker.Summary.self) { group in
            for batch in [4, 1] {
                group.addTask {
                    try await DeliveryWorker(pipeline: pipeline, concurrency: 4, batchSize: batch, parallelClaims: 4,
                                             poll: .milliseconds(200), drain: false)
                        .run(until: recording.stopWhenDelivered(expected))
                }
            }
            try await group.waitForAll()
        }
        try await waitUntil("the slow calls end") { await backend.slowInFlight == 0 }

        let rows = try await ledger.submissions(states: nil, limit: nil)
        #expect(rows.count == submissions && rows.allSatisfy { $0.state == .delivered })
        #expect(await backend.stored == submissions, "each submission stored once")
        let report = recording.report()
        #expect(report.rowsWithoutOneSuccessfulFinish.isEmpty,
                "every row has exactly one recorded outcome: \(report.rowsWithoutOneSuccessfulFinish)")
        #expect(report.staleSuccesses.isEmpty, "0 finishes with a stale token: \(report.staleSuccesses)")
        let slow = await backend.slowCalls
        #expect(slow >= submissions / 100, "the slow calls happened")
        // Each refused finish is a late outcome, and each was logged.
        #expect(logs.count(of: "late outcome after a lost lease: not recorded") == report.refusedFinishes)
        print("fencing (\(ledger.isShared ? "PostgreSQL" : "SQLite")): \(slow) slow calls, "
              + "\(report.refusedFinishes) late outcomes refused and logged, 0 stale finishes")
    }
}

/// Stores through an in-memory backend; every `every`-th call first waits `takes` (ignoring cancellation).
actor SlowSometimes: PostfachBackend {
    nonisolated let kind = "memory"
    let inner = InMemoryBackend()
    let every: Int
    let takes: Duration
    private var calls = 0
    private(set) var slowCalls = 0
    private var slowRunning = 0

    init(every: Int, takes: Duration) {
        self.every = every
        self.takes = takes
    }

    var stored: Int { get async { await inner.count } }

    func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        calls += 1
        if calls % every == 1 {
            slowCalls += 1
            slowRunning += 1
            let until = ContinuousClock.now + takes
            while ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(50)) }
            slowRunning -= 1
        }
        return try await inner.deliver(delivery)
    }

    var slowInFlight: Int { slowRunning }

}

@Suite("Start-up recovery of a worker while the database restarts")
struct StartupRecoveryTests {
    @Test("an unreachable ledger during the start-up recovery is waited for, not the end of the worker")
    func waitsForTheLedger() async throws {
        let harness = try Harness()
        defer { harness.remove() }
        func pipeline(on ledger: RecordingLedger, spool: String) throws -> Pipeline {
            Pipeline(validator: Harness.validator, router: Harness.router,
                     backends: BackendSelection(default: InMemoryBackend()), ledger: ledger,
                     spool: try Spool(directory: harness.directory.appendingPathComponent(spool)), deliversOnIntake: false)
        }
        let restarting = RecordingLedger(harness.ledger, failingListings: 3)
        try await pipeline(on: restarting, spool: "spool-2").recoverWaitingForLedger(poll: .milliseconds(1), until: StopSignal())
        #expect(restarting.listingFailuresLeft == 0, "the recovery ran once the ledger answered")

        // Asked to stop while the ledger is still unreachable: it returns instead of waiting on.
        let unreachable = RecordingLedger(harness.ledger, failingListings: .max)
        let stopping = try pipeline(on: unreachable, spool: "spool-3")
        let stop = StopSignal()
        let waiting = Task { try await stopping.recoverWaitingForLedger(poll: .milliseconds(1), until: stop) }
        try await waitUntil("the recovery has tried") { unreachable.listingFailuresLeft < .max }
        stop.stop()
        try await waiting.value
    }
}

/// A log handler that keeps messages.
final class CollectedLogs: LogHandler, @unchecked Sendable {
    // Safety: every access to `messages` holds the lock.
    private let lock = NSLock()
    private var messages: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lock.lock(); defer { lock.unlock() }
        messages.append(event.message.description)
    }

    func count(of message: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        return messages.filter { $0 == message }.count
    }
}

/// A ledger that records the leases it hands out and the outcomes it records, to check fencing afterwards.
final class RecordingLedger: LedgerStore, @unchecked Sendable {
    let base: any LedgerStore
    // Safety: every access to the records holds the lock.
    private let lock = NSLock()
    private var lastToken: [Int64: String] = [:]
    private var successes: [Int64: [String]] = [:]
    private var refused = 0
    private var delivered = 0
    private var stopAt: (Int, StopSignal)?
    /// Listing calls still to fail with `ledger.unavailable` (a database restarting).
    private var failingListings: Int

    init(_ base: any LedgerStore, failingListings: Int = 0) {
        self.base = base
        self.failingListings = failingListings
    }

    /// How many listing calls are still to fail.
    var listingFailuresLeft: Int {
        lock.lock(); defer { lock.unlock() }
        return failingListings
    }

    var identity: ProcessIdentity { base.identity }
    var isShared: Bool { base.isShared }

    /// A stop signal given once `count` rows were recorded delivered.
    func stopWhenDelivered(_ count: Int) -> StopSignal {
        lock.lock(); defer { lock.unlock() }
        if let (_, signal) = stopAt { return signal }
        let signal = StopSignal()
        stopAt = (count, signal)
        return signal
    }

    struct Report {
        var rowsWithoutOneSuccessfulFinish: [Int64]
        var staleSuccesses: [Int64]
        var refusedFinishes: Int
    }

    func report() -> Report {
        lock.lock(); defer { lock.unlock() }
        let rows = lastToken.keys.sorted()
        return Report(rowsWithoutOneSuccessfulFinish: rows.filter { successes[$0]?.count != 1 },
                      staleSuccesses: rows.filter { row in successes[row]?.contains { $0 != lastToken[row] } ?? false },
                      refusedFinishes: refused)
    }

    private func claimed(_ rows: [Submission]) {
        lock.lock(); defer { lock.unlock() }
        for row in rows { if let id = row.id, let token = row.leaseToken { lastToken[id] = token } }
    }

    func recordReceived(source: String, at date: Date, origin: IntakeOrigin) async throws -> Submission {
        try await base.recordReceived(source: source, at: date, origin: origin)
    }
    func reserveIdempotencyKey(client: String, key: String, for duration: Duration) async throws -> IdempotencyReservation {
        try await base.reserveIdempotencyKey(client: client, key: key, for: duration)
    }
    func completeIdempotencyKey(client: String, key: String, outcome: IdempotencyOutcome) async throws {
        try await base.completeIdempotencyKey(client: client, key: key, outcome: outcome)
    }
    func releaseIdempotencyKey(client: String, key: String) async throws {
        try await base.releaseIdempotencyKey(client: client, key: key)
    }
    func queueByPostfach() async throws -> [PostfachQueue] { try await base.queueByPostfach() }
    func purgeIdempotencyKeys(completedBefore date: Date) async throws -> Int {
        try await base.purgeIdempotencyKeys(completedBefore: date)
    }
    func update(_ submission: Submission, from expected: SubmissionState) async throws -> Bool { try await base.update(submission, from: expected) }
    func adopt(_ observed: Submission, evenIfOwnerRuns: Bool) async throws -> Submission? { try await base.adopt(observed, evenIfOwnerRuns: evenIfOwnerRuns) }
    func claimAndQueue(_ submission: Submission, leaseFor: Duration?, from expected: SubmissionState) async throws -> Submission {
        let row = try await base.claimAndQueue(submission, leaseFor: leaseFor, from: expected)
        claimed([row])
        return row
    }
    func claimDue(limit: Int, dueBy: Date?, leaseFor: Duration) async throws -> [Submission] {
        let rows = try await base.claimDue(limit: limit, dueBy: dueBy, leaseFor: leaseFor)
        claimed(rows)
        return rows
    }
    func extendLeases(_ leased: [Submission], by: Duration) async throws -> Set<Int64> { try await base.extendLeases(leased, by: by) }
    func finishAttempt(_ outcome: Submission) async throws -> Bool {
        let done = try await base.finishAttempt(outcome)
        recordFinish(outcome, done: done)?.stop()
        return done
    }

    /// Records an outcome; returns the stop signal once every row was delivered.
    private func recordFinish(_ outcome: Submission, done: Bool) -> StopSignal? {
        lock.lock(); defer { lock.unlock() }
        if done, let id = outcome.id, let token = outcome.leaseToken { successes[id, default: []].append(token) }
        if !done { refused += 1 }
        if done && outcome.state == .delivered { delivered += 1 }
        if let (count, stop) = stopAt, delivered >= count { return stop }
        return nil
    }
    func release(_ leased: Submission) async throws -> Bool { try await base.release(leased) }
    func recordReference(_ leased: Submission, reference: String) async throws -> Bool {
        try await base.recordReference(leased, reference: reference)
    }
    func dueConfirmations(limit: Int, recheckAfter: Duration) async throws -> [Submission] {
        try await base.dueConfirmations(limit: limit, recheckAfter: recheckAfter)
    }
    func recordConfirmation(_ answered: Submission) async throws -> Bool { try await base.recordConfirmation(answered) }
    func requeueExpiredLeases() async throws -> [Submission] { try await base.requeueExpiredLeases() }
    func rescue(_ observed: Submission) async throws -> Submission? { try await base.rescue(observed) }
    func requeue(_ observed: Submission) async throws -> Submission? { try await base.requeue(observed) }
    func nextAttempt() async throws -> Date? { try await base.nextAttempt() }
    func waitForWork(upTo timeout: Duration) async { await base.waitForWork(upTo: timeout) }
    func submission(_ id: Int64) async throws -> Submission? { try await base.submission(id) }
    /// Takes one of the listing failures, if any are left.
    private func takeListingFailure() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard failingListings > 0 else { return false }
        failingListings -= 1
        return true
    }

    func submissions(states: [SubmissionState]?, limit: Int?) async throws -> [Submission] {
        if takeListingFailure() { throw LedgerError(code: "ledger.unavailable", message: "the database restarts (test)") }
        return try await base.submissions(states: states, limit: limit)
    }
    func counts() async throws -> [SubmissionState: Int] { try await base.counts() }
    func newestID() async throws -> Int64 { try await base.newestID() }
    func unpurged(state: SubmissionState, finishedBefore date: Date) async throws -> [Submission] { try await base.unpurged(state: state, finishedBefore: date) }
    func markPurged(_ observed: Submission, cutoff: Date, at date: Date) async throws -> Submission? { try await base.markPurged(observed, cutoff: cutoff, at: date) }
    func purgedWithPayload() async throws -> [Submission] { try await base.purgedWithPayload() }
    func forgetPayloadLocation(_ row: Submission) async throws { try await base.forgetPayloadLocation(row) }
    func close() async { await base.close() }
}
