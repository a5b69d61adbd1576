import Foundation
import GRDB
import Postfach

/// Where a submission stands. Every submission ends in `delivered`, `duplicate` or one of the kept states
/// (`rejected`, `unroutable`, `conflict`, `dead`, `abandoned`) with its reason; nothing leaves the ledger silently.
public enum SubmissionState: String, Codable, Sendable, CaseIterable, DatabaseValueConvertible {
    /// Recorded; the payload is being read.
    case received
    /// Valid; routing keys recorded, not yet routed (a crash here resumes with routing).
    case validated
    /// Not well-formed, refused by the safe profile, or schema-invalid. Payload kept.
    case rejected
    /// No Postfach could be decided (unknown, retired or malformed key, no rule). Payload kept.
    case unroutable
    /// Routed and waiting for its (first or next) delivery attempt.
    case queued
    /// Delivered; the receipt is recorded.
    case delivered
    /// The same delivery id was accepted before with the same payload (a resend); `duplicateOf` names the original.
    case duplicate
    /// The delivery id was accepted before with a *different* payload (a portal reusing message ids, or a forged
    /// id). Kept with its payload and reason `ledger.id-conflict`, never delivered under that id; `duplicateOf`
    /// names the row that owns the id.
    case conflict
    /// Delivery failed more often than allowed, or for good. Payload and last error kept; `retry` re-queues.
    case dead
    /// Intake was interrupted before the payload was complete (a crash while reading); the sender must resend.
    case abandoned

    /// States that need no more work.
    public var isFinal: Bool { ![.received, .validated, .queued].contains(self) }
}

/// One row of the ledger.
public struct Submission: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "submission"

    public var id: Int64?
    public var source: String
    public var receivedAt: Date
    public var updatedAt: Date
    public var state: SubmissionState
    public var spoolPath: String?
    public var payloadSHA256: String?
    public var payloadSize: Int64?
    public var messageId: String?
    public var deliveryId: String?
    public var schemaId: String?
    /// Routing keys captured while validating (JSON), so a restart can route without parsing again.
    public var routingKeys: String?
    public var postfach: String?
    /// The routing decision (JSON: rule, level, table).
    public var routing: String?
    public var reasonCode: String?
    public var reason: String?
    public var attempts: Int
    public var nextAttemptAt: Date?
    /// The receipt (JSON).
    public var receipt: String?
    public var duplicateOf: Int64?
    /// The process working on the row (``ProcessIdentity``): the one reading a `received` row, routing a
    /// `validated` one, or holding a `queued` row's delivery lease until `nextAttemptAt`. nil when nobody is.
    public var owner: String?
    /// When the payload was deleted under the retention policy (the row stays as the audit record).
    public var purgedAt: Date?

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// The durable record of every submission (SQLite through GRDB): state machine, idempotency claims, retries.
public final class Ledger: Sendable {
    let database: DatabaseQueue

    /// The process this ledger acts for (``ProcessIdentity/current`` unless a test says otherwise).
    public let identity: ProcessIdentity

    /// Opens (and migrates) the ledger at `path`; `:memory:` for a throwaway ledger. `readOnly` opens an existing
    /// ledger for listing without changing anything (no migration; a missing file lists as empty).
    public init(path: String, readOnly: Bool = false, identity: ProcessIdentity = .current) throws {
        self.identity = identity
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            if !readOnly { try db.execute(sql: "PRAGMA synchronous = FULL") }
        }
        configuration.busyMode = .timeout(10)
        if readOnly && path != ":memory:" && FileManager.default.fileExists(atPath: path) {
            var readOnlyConfiguration = configuration
            readOnlyConfiguration.readonly = true
            let queue = try DatabaseQueue(path: path, configuration: readOnlyConfiguration)
            do {
                _ = try queue.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sqlite_master") }
                database = queue
            } catch let error as DatabaseError where error.resultCode == .SQLITE_READONLY {
                // A writer that was killed left a hot journal, which only a writable connection rolls back (to the
                // last committed state). Opened so, without migrating; nothing of the ledger's content changes.
                database = try DatabaseQueue(path: path, configuration: configuration)
            }
            return
        }
        database = path == ":memory:" || readOnly ? try DatabaseQueue(configuration: configuration)
                                                  : try DatabaseQueue(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "submission") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("source", .text).notNull()
                t.column("receivedAt", .datetime).notNull()
                t.column("updatedAt", .datetime).notNull()
                t.column("state", .text).notNull()
                t.column("spoolPath", .text)
                t.column("payloadSHA256", .text)
                t.column("payloadSize", .integer)
                t.column("messageId", .text)
                t.column("deliveryId", .text)
                t.column("schemaId", .text)
                t.column("routingKeys", .text)
                t.column("postfach", .text)
                t.column("routing", .text)
                t.column("reasonCode", .text)
                t.column("reason", .text)
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("nextAttemptAt", .datetime)
                t.column("receipt", .text)
                t.column("duplicateOf", .integer)
            }
            try db.create(index: "submission_state", on: "submission", columns: ["state", "nextAttemptAt"])
            // One row may own a delivery id: the idempotency claim.
            try db.create(table: "deliveryClaim") { t in
                t.primaryKey("deliveryId", .text)
                t.column("submissionId", .integer).notNull()
            }
        }
        migrator.registerMigration("v2-owner") { db in
            try db.alter(table: "submission") { t in t.add(column: "owner", .text) }
        }
        migrator.registerMigration("v3-retention") { db in
            try db.alter(table: "submission") { t in t.add(column: "purgedAt", .datetime) }
        }
        try migrator.migrate(database)
    }

    /// Records a new submission in state `received` before anything else happens to it.
    public func recordReceived(source: String, at date: Date) throws -> Submission {
        try database.write { db in
            var submission = Submission(
                id: nil, source: source, receivedAt: date, updatedAt: date, state: .received, spoolPath: nil,
                payloadSHA256: nil, payloadSize: nil, messageId: nil, deliveryId: nil, schemaId: nil, routingKeys: nil,
                postfach: nil, routing: nil, reasonCode: nil, reason: nil, attempts: 0, nextAttemptAt: nil, receipt: nil,
                duplicateOf: nil, owner: identity.description, purgedAt: nil)
            try submission.insert(db)
            return submission
        }
    }

    /// Saves a changed submission (one transaction).
    public func save(_ submission: Submission) throws {
        var copy = submission
        copy.updatedAt = Date()
        try database.write { db in try copy.update(db) }
    }

    /// Moves a routed submission to `queued`, claiming its delivery id and holding its delivery lease until
    /// `leaseUntil` (the first attempt follows at once); or, when another submission owns the id,
    /// to `duplicate` of that one (same payload hash) or to `conflict` (a different payload under the same id,
    /// kept and never delivered). One transaction. Returns the saved row.
    public func claimAndQueue(_ submission: Submission, leaseUntil: Date) throws -> Submission {
        try database.write { db in
            var row = submission
            row.updatedAt = Date()
            guard let deliveryId = row.deliveryId, let id = row.id else { return row }
            if let owner = try Int64.fetchOne(db, sql: "SELECT submissionId FROM deliveryClaim WHERE deliveryId = ?",
                                              arguments: [deliveryId]), owner != id {
                let ownerHash = try String.fetchOne(db, sql: "SELECT payloadSHA256 FROM submission WHERE id = ?",
                                                    arguments: [owner])
                row.duplicateOf = owner
                if ownerHash != nil && ownerHash == row.payloadSHA256 {
                    row.state = .duplicate
                    row.reasonCode = "ledger.duplicate"
                    row.reason = "the delivery id was accepted before as submission \(owner)"
                } else {
                    row.state = .conflict
                    row.reasonCode = "ledger.id-conflict"
                    row.reason = "the delivery id was accepted before as submission \(owner) with a different payload; "
                        + "kept, not delivered under this id"
                }
            } else {
                try db.execute(sql: "INSERT OR IGNORE INTO deliveryClaim (deliveryId, submissionId) VALUES (?, ?)",
                               arguments: [deliveryId, id])
                row.state = .queued
                row.nextAttemptAt = leaseUntil
                row.owner = identity.description
            }
            if row.state != .queued { row.owner = nil }
            try row.update(db)
            return row
        }
    }

    /// One submission by id.
    public func submission(_ id: Int64) throws -> Submission? {
        try database.read { db in try Submission.fetchOne(db, key: id) }
    }

    /// Submissions, optionally of some states, oldest first.
    public func submissions(states: [SubmissionState]? = nil, limit: Int? = nil) throws -> [Submission] {
        try database.read { db in
            var request = Submission.order(Column("id"))
            if let states { request = request.filter(states.map(\.rawValue).contains(Column("state"))) }
            if let limit { request = request.limit(limit) }
            return try request.fetchAll(db)
        }
    }

    /// Queued submissions whose next attempt is due, or whose delivery lease belongs to a process that is gone.
    public func due(at date: Date) throws -> [Submission] {
        try database.read { db in
            try Submission.filter(Column("state") == SubmissionState.queued.rawValue
                                  && (Column("nextAttemptAt") <= date || Column("owner") != nil))
                .order(Column("nextAttemptAt"), Column("id")).fetchAll(db)
        }.filter { row in
            (row.nextAttemptAt.map { $0 <= date } ?? true) || !Self.ownerIsAlive(row.owner)
        }
    }

    /// Takes the delivery lease of a queued row as it was read, due at `now` or held by a process that is gone
    /// (compare-and-set on state and owner, and for an unowned row on being due): the row is this process's to
    /// deliver until `leaseUntil`. nil when another process took it, or changed it, first.
    public func lease(_ observed: Submission, now: Date, until leaseUntil: Date) throws -> Submission? {
        guard let id = observed.id else { return nil }
        // An owner identity is unique, so an unchanged owner means nobody leased the row since it was read; a row
        // without owner must still be due (another process may have tried and rescheduled it meanwhile).
        let takeOver = observed.owner != nil && !Self.ownerIsAlive(observed.owner)
        return try database.write { db in
            try db.execute(sql: """
                UPDATE submission SET owner = ?, nextAttemptAt = ?, updatedAt = ?
                WHERE id = ? AND state = ? AND owner IS ? AND (? OR nextAttemptAt <= ?)
                """, arguments: [identity.description, leaseUntil, Date(), id, SubmissionState.queued.rawValue,
                                 observed.owner, takeOver, now])
            return db.changesCount == 1 ? try Submission.fetchOne(db, key: id) : nil
        }
    }

    /// Records the outcome of a delivery attempt, fenced by the lease: only while the row is still queued and this
    /// process holds it. Returns false (and changes nothing) when the lease was lost meanwhile: another process
    /// took the row over, and its outcome stands.
    public func finishAttempt(_ submission: Submission) throws -> Bool {
        guard let id = submission.id else { return false }
        var copy = submission
        copy.updatedAt = Date()
        return try database.write { db in
            // A write first, so the transaction holds the write lock from here on.
            try db.execute(sql: "UPDATE submission SET owner = owner WHERE id = ? AND state = ? AND owner = ?",
                           arguments: [id, SubmissionState.queued.rawValue, identity.description])
            guard db.changesCount == 1 else { return false }
            try copy.update(db)
            return true
        }
    }

    /// Takes over a `received` or `validated` row whose owner is gone (compare-and-set on state and owner);
    /// `evenIfOwnerRuns` for a row of this very process that no call works on any more.
    public func adopt(_ observed: Submission, evenIfOwnerRuns: Bool = false) throws -> Submission? {
        guard let id = observed.id, evenIfOwnerRuns || !Self.ownerIsAlive(observed.owner) else { return nil }
        return try database.write { db in
            try db.execute(sql: "UPDATE submission SET owner = ?, updatedAt = ? WHERE id = ? AND state = ? AND owner IS ?",
                           arguments: [identity.description, Date(), id, observed.state.rawValue, observed.owner])
            return db.changesCount == 1 ? try Submission.fetchOne(db, key: id) : nil
        }
    }

    /// Puts a dead or queued row back in the queue, due now, with a fresh attempt count (compare-and-set on state
    /// and owner, so a row another process leased meanwhile is left alone). nil when it changed meanwhile.
    public func requeue(_ observed: Submission) throws -> Submission? {
        guard let id = observed.id else { return nil }
        return try database.write { db in
            try db.execute(sql: """
                UPDATE submission SET state = ?, attempts = 0, nextAttemptAt = ?, owner = NULL, updatedAt = ?
                WHERE id = ? AND state = ? AND owner IS ? AND purgedAt IS NULL
                """, arguments: [SubmissionState.queued.rawValue, Date(), Date(), id, observed.state.rawValue, observed.owner])
            return db.changesCount == 1 ? try Submission.fetchOne(db, key: id) : nil
        }
    }

    /// Whether the process named in a row's `owner` still runs (rows of older versions have none: gone).
    public static func ownerIsAlive(_ owner: String?) -> Bool {
        owner.flatMap(ProcessIdentity.init)?.isAlive ?? false
    }

    /// The earliest next attempt among queued submissions.
    public func nextAttempt() throws -> Date? {
        try database.read { db in
            try Date.fetchOne(db, sql: "SELECT MIN(nextAttemptAt) FROM submission WHERE state = ?",
                              arguments: [SubmissionState.queued.rawValue])
        }
    }

    /// Rows in a final `state` whose payload is still kept and that became final before `date`.
    public func unpurged(state: SubmissionState, finishedBefore date: Date) throws -> [Submission] {
        guard state.isFinal else { return [] }
        return try database.read { db in
            try Submission.filter(Column("state") == state.rawValue && Column("purgedAt") == nil && Column("updatedAt") < date)
                .order(Column("id")).fetchAll(db)
        }
    }

    /// Marks a row purged (compare-and-set: still in the observed final state since before `cutoff`, not yet
    /// purged). nil when it changed meanwhile.
    public func markPurged(_ observed: Submission, cutoff: Date, at date: Date) throws -> Submission? {
        guard let id = observed.id, observed.state.isFinal else { return nil }
        return try database.write { db in
            try db.execute(sql: """
                UPDATE submission SET purgedAt = ? WHERE id = ? AND state = ? AND purgedAt IS NULL AND updatedAt < ?
                """, arguments: [date, id, observed.state.rawValue, cutoff])
            return db.changesCount == 1 ? try Submission.fetchOne(db, key: id) : nil
        }
    }

    /// Purged rows whose payload file may still exist (a purge interrupted between the row and the file).
    public func purgedWithPayloadPath() throws -> [Submission] {
        try database.read { db in
            try Submission.filter(Column("purgedAt") != nil && Column("spoolPath") != nil).fetchAll(db)
        }
    }

    /// Forgets the payload path of a purged row once its file is gone.
    public func forgetPayloadPath(_ row: Submission) throws {
        guard let id = row.id else { return }
        try database.write { db in
            try db.execute(sql: "UPDATE submission SET spoolPath = NULL WHERE id = ? AND purgedAt IS NOT NULL", arguments: [id])
        }
    }

    /// The highest row id so far (0 for an empty ledger).
    public func newestID() throws -> Int64 {
        try database.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM submission") ?? 0 }
    }

    /// Number of submissions per state.
    public func counts() throws -> [SubmissionState: Int] {
        try database.read { db in
            var result: [SubmissionState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM submission GROUP BY state") {
                if let state = SubmissionState(rawValue: row["state"]) { result[state] = row["n"] }
            }
            return result
        }
    }
}
