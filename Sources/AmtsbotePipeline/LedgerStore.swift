import Foundation
import Postfach

/// The ledger contract: the durable record of every submission and the delivery queue, shared by every process
/// that works on it. Two engines implement it: ``SQLiteLedger`` (the embedded default, one machine) and
/// `PostgresLedger` (module AmtsbotePostgres: any number of processes on any number of machines).
///
/// Every state transition is a compare-and-set (`UPDATE … WHERE state = expected …`): a call that finds the row
/// changed by another process changes nothing and says so (`false` or `nil`). Times that several machines must agree
/// on (leases, due times when `dueBy` is nil) come from the engine's own clock.
///
/// The delivery queue: a routed row is `queued` (due at `nextAttemptAt`); ``claimDue(limit:dueBy:leaseFor:)`` moves
/// due rows to `running` in one short transaction, counting the attempt and handing out a fresh lease token; the
/// claimer commits before it calls a backend, extends the lease while the attempt runs
/// (``extendLeases(_:by:)``), and records the outcome fenced by the token (``finishAttempt(_:)``). Rows whose lease
/// expired are put back by any process (``requeueExpiredLeases()``).
public protocol LedgerStore: Sendable {
    /// The process this ledger acts for: the owner written into rows it works on.
    var identity: ProcessIdentity { get }
    /// Whether processes on other machines may share this ledger (the owner check by process id then only covers
    /// this machine; leases cover the rest).
    var isShared: Bool { get }

    // MARK: Intake

    /// Records a new submission in state `received`, owned by this process, before anything else happens to it,
    /// with where it came from (`origin`: the service client and the portal's metadata).
    func recordReceived(source: String, at date: Date, origin: IntakeOrigin) async throws -> Submission
    /// Writes `submission` (as the caller changed it) if the row is still in state `expected` and owned by this
    /// process. `false`: another process took the row over; nothing was written.
    func update(_ submission: Submission, from expected: SubmissionState) async throws -> Bool
    /// Takes over a `received` or `validated` row whose owner is gone (compare-and-set on state and owner);
    /// `evenIfOwnerRuns` for a row of this very process that no call works on any more.
    func adopt(_ observed: Submission, evenIfOwnerRuns: Bool) async throws -> Submission?
    /// Moves a routed row of this process, still `expected` in the ledger (`validated`, or `received` when the
    /// intake writes its verdict and the queueing at once), into the queue, claiming its delivery id: due now, or,
    /// with `leaseFor`, straight to `running` under a lease of this process (the first attempt follows at once).
    /// When another row owns the delivery id, the row becomes `duplicate` of it (same payload hash) or `conflict`
    /// (a different payload; kept, never delivered under that id). The unique delivery id is enforced by the
    /// engine, race-free between processes. Returns the row as saved.
    func claimAndQueue(_ submission: Submission, leaseFor: Duration?, from expected: SubmissionState) async throws -> Submission

    // MARK: Delivery queue

    /// Claims up to `limit` queued rows due by `dueBy` (nil: the engine's now), oldest due first, in one short
    /// transaction: each becomes `running` with `attempts + 1`, a fresh `leaseToken`, `leaseUntil` = now +
    /// `leaseFor` and this process as owner. Rows another process is claiming at the same moment are skipped, never
    /// waited for.
    func claimDue(limit: Int, dueBy: Date?, leaseFor: Duration) async throws -> [Submission]
    /// Extends the leases of running rows this process still holds (each by its own token) to now + `by`; returns
    /// the ids still held. A row missing from the answer was lost (expired and taken over).
    func extendLeases(_ leased: [Submission], by: Duration) async throws -> Set<Int64>
    /// Records an attempt's outcome (`delivered`, `queued` with a new `nextAttemptAt`, or `dead`, with `reasonCode`,
    /// `reason`, `receipt`, `confirmation` and `confirmationDueAt`; other fields are not written), fenced by the
    /// lease: only while the row is still `running` under `outcome.leaseToken` (the token it was claimed with). The
    /// lease is released. `false`: the lease was lost meanwhile; nothing was written.
    func finishAttempt(_ outcome: Submission) async throws -> Bool
    /// Gives a claimed row back without an attempt (a worker stopping before it called the backend): `queued`, due
    /// now, the attempt not counted. Fenced by the lease like ``finishAttempt(_:)``.
    func release(_ leased: Submission) async throws -> Bool
    /// Records what a backend needs to resume an attempt (``Submission/externalReference``), fenced by the lease
    /// more strictly than ``finishAttempt(_:)``: only while the row is `running` under `leased.leaseToken` and the
    /// lease has not run out (a row whose lease expired may be taken over at any moment, and the next holder would
    /// resume the same transfer). `false`: nothing was written, and the backend must not take its next step.
    func recordReference(_ leased: Submission, reference: String) async throws -> Bool
    /// Delivered rows whose receiver has not answered yet (`confirmation` = `pending`) and whose next check is due,
    /// oldest due first, at most `limit`. The same statement moves each one's `confirmationDueAt` to now +
    /// `recheckAfter`, so that workers asking at the same moment take different rows, and a row whose check fails
    /// is asked again later.
    func dueConfirmations(limit: Int, recheckAfter: Duration) async throws -> [Submission]
    /// Records the receiver's answer on a delivered row that awaits one (compare-and-set: only while the row is
    /// `delivered` with `confirmation` = `pending`): writes `confirmation`, `confirmationEvidence`, `confirmedAt`,
    /// `reasonCode` and `reason` of `answered`, and clears `confirmationDueAt` unless `answered` is still `pending`
    /// (an answer that was not counted, whose reason is kept while the row waits on). `false`: the row awaits no
    /// answer (another worker recorded it first); nothing was written.
    func recordConfirmation(_ answered: Submission) async throws -> Bool
    /// Puts every `running` row whose lease expired back in the queue, due now; returns those rows.
    func requeueExpiredLeases() async throws -> [Submission]
    /// Puts a `running` row back in the queue at once (compare-and-set on its lease token): for a row whose
    /// owner is known to be gone before its lease expires.
    func rescue(_ observed: Submission) async throws -> Submission?
    /// Puts a `dead` or `queued` row back in the queue, due now, with a fresh attempt count (compare-and-set on
    /// state); a purged row stays as it is. nil when it changed meanwhile.
    func requeue(_ observed: Submission) async throws -> Submission?
    /// The earliest due time among queued rows, or the earliest lease expiry among running ones.
    func nextAttempt() async throws -> Date?
    /// Returns when work may have become due (another process queued or released a row), or after `timeout`.
    /// Engines without notifications simply wait; callers poll again either way.
    func waitForWork(upTo timeout: Duration) async

    // MARK: Reading

    /// One submission by id.
    func submission(_ id: Int64) async throws -> Submission?
    /// Submissions, optionally of some states, oldest first.
    func submissions(states: [SubmissionState]?, limit: Int?) async throws -> [Submission]
    /// Number of submissions per state.
    func counts() async throws -> [SubmissionState: Int]
    /// The delivery queue per Postfach: rows `queued` and `running`, and the oldest due time of the queued ones.
    func queueByPostfach() async throws -> [PostfachQueue]
    /// The highest row id so far (0 for an empty ledger).
    func newestID() async throws -> Int64

    // MARK: Retention

    /// Rows in a final `state` whose payload is still kept and that became final before `date`.
    func unpurged(state: SubmissionState, finishedBefore date: Date) async throws -> [Submission]
    /// Marks a row purged (compare-and-set: still in the observed final state since before `cutoff`, not yet
    /// purged). nil when it changed meanwhile.
    func markPurged(_ observed: Submission, cutoff: Date, at date: Date) async throws -> Submission?
    /// Purged rows whose payload may still exist (a purge interrupted between the row and the payload).
    func purgedWithPayload() async throws -> [Submission]
    /// Forgets the payload location of a purged row once its payload is gone.
    func forgetPayloadLocation(_ row: Submission) async throws

    // MARK: Idempotency keys (the service's `Idempotency-Key` header)

    /// Reserves `key` of `client` for a request that starts now, for `duration`; or says what holds it: another
    /// request still running (`.inFlight`), or the outcome of the first request (`.completed`). A reservation whose
    /// time ran out (its process died mid-request) is taken over.
    func reserveIdempotencyKey(client: String, key: String, for duration: Duration) async throws -> IdempotencyReservation
    /// Records the first request's outcome under its key (the reservation ends).
    func completeIdempotencyKey(client: String, key: String, outcome: IdempotencyOutcome) async throws
    /// Gives a reservation up without an outcome (the request failed before a submission was recorded).
    func releaseIdempotencyKey(client: String, key: String) async throws
    /// Forgets completed keys recorded before `date`; returns how many.
    func purgeIdempotencyKeys(completedBefore date: Date) async throws -> Int

    /// Closes connections; the ledger is not used afterwards.
    func close() async
}

extension LedgerStore {
    /// Records a new submission from the command line (no client, no portal metadata).
    public func recordReceived(source: String, at date: Date) async throws -> Submission {
        try await recordReceived(source: source, at: date, origin: IntakeOrigin())
    }

    /// Queues a `validated` row of this process (see ``claimAndQueue(_:leaseFor:from:)``).
    public func claimAndQueue(_ submission: Submission, leaseFor: Duration?) async throws -> Submission {
        try await claimAndQueue(submission, leaseFor: leaseFor, from: .validated)
    }
}

extension ProcessIdentity {
    /// Whether the process named in a row's `owner` still runs (rows of older versions have none: gone). Owners on
    /// other machines count as running: only their leases tell.
    public static func ownerIsAlive(_ owner: String?) -> Bool {
        owner.flatMap(ProcessIdentity.init)?.isAlive ?? false
    }
}

/// One Postfach's share of the delivery queue (``LedgerStore/queueByPostfach()``).
public struct PostfachQueue: Sendable, Hashable {
    public var postfach: String
    public var queued: Int
    public var running: Int
    /// The earliest `nextAttemptAt` of its queued rows.
    public var oldestDue: Date?

    public init(postfach: String, queued: Int, running: Int, oldestDue: Date?) {
        self.postfach = postfach
        self.queued = queued
        self.running = running
        self.oldestDue = oldestDue
    }
}

/// What an `Idempotency-Key` stands for once its first request has been answered.
public struct IdempotencyOutcome: Sendable, Hashable {
    /// SHA-256 (hex) of the first request's body: a later request with the same key and another body is refused.
    public var requestSHA256: String
    /// The submission the first request recorded.
    public var submission: Int64
    /// The first response, replayed for a repeat: its status and body.
    public var responseStatus: Int
    public var responseBody: String

    public init(requestSHA256: String, submission: Int64, responseStatus: Int, responseBody: String) {
        self.requestSHA256 = requestSHA256
        self.submission = submission
        self.responseStatus = responseStatus
        self.responseBody = responseBody
    }
}

/// The answer to ``LedgerStore/reserveIdempotencyKey(client:key:for:)``.
public enum IdempotencyReservation: Sendable, Hashable {
    /// The key is reserved for the caller's request.
    case reserved
    /// Another request with this key is still running.
    case inFlight
    /// The key was used before; this was the outcome.
    case completed(IdempotencyOutcome)
}

/// Errors of a ledger engine that a user can act on.
public struct LedgerError: Error, Sendable, CustomStringConvertible {
    /// Stable code (`ledger.unavailable`, `ledger.configuration`, `ledger.lost-row`).
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
