import Foundation
import GRDB

/// Where a submission stands. Every submission ends in `delivered`, `duplicate` or one of the kept states
/// (`rejected`, `unroutable`, `dead`, `abandoned`) with its reason; nothing leaves the ledger silently.
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
    /// The same delivery id was accepted before; `duplicateOf` names the original.
    case duplicate
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

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// The durable record of every submission (SQLite through GRDB): state machine, idempotency claims, retries.
public final class Ledger: Sendable {
    let database: DatabaseQueue

    /// Opens (and migrates) the ledger at `path`; `:memory:` for a throwaway ledger.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        configuration.busyMode = .timeout(10)
        database = path == ":memory:" ? try DatabaseQueue(configuration: configuration)
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
        try migrator.migrate(database)
    }

    /// Records a new submission in state `received` before anything else happens to it.
    public func recordReceived(source: String, at date: Date) throws -> Submission {
        try database.write { db in
            var submission = Submission(
                id: nil, source: source, receivedAt: date, updatedAt: date, state: .received, spoolPath: nil,
                payloadSHA256: nil, payloadSize: nil, messageId: nil, deliveryId: nil, schemaId: nil, routingKeys: nil,
                postfach: nil, routing: nil, reasonCode: nil, reason: nil, attempts: 0, nextAttemptAt: nil, receipt: nil,
                duplicateOf: nil)
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

    /// Moves a routed submission to `queued`, claiming its delivery id; or, when another submission owns the id,
    /// to `duplicate` of that one. One transaction. Returns the saved row.
    public func claimAndQueue(_ submission: Submission) throws -> Submission {
        try database.write { db in
            var row = submission
            row.updatedAt = Date()
            guard let deliveryId = row.deliveryId, let id = row.id else { return row }
            if let owner = try Int64.fetchOne(db, sql: "SELECT submissionId FROM deliveryClaim WHERE deliveryId = ?",
                                              arguments: [deliveryId]), owner != id {
                row.state = .duplicate
                row.duplicateOf = owner
                row.reasonCode = "ledger.duplicate"
                row.reason = "the delivery id was accepted before as submission \(owner)"
            } else {
                try db.execute(sql: "INSERT OR IGNORE INTO deliveryClaim (deliveryId, submissionId) VALUES (?, ?)",
                               arguments: [deliveryId, id])
                row.state = .queued
                row.nextAttemptAt = row.nextAttemptAt ?? Date()
            }
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

    /// Queued submissions whose next attempt is due.
    public func due(at date: Date) throws -> [Submission] {
        try database.read { db in
            try Submission.filter(Column("state") == SubmissionState.queued.rawValue && Column("nextAttemptAt") <= date)
                .order(Column("nextAttemptAt"), Column("id")).fetchAll(db)
        }
    }

    /// The earliest next attempt among queued submissions.
    public func nextAttempt() throws -> Date? {
        try database.read { db in
            try Date.fetchOne(db, sql: "SELECT MIN(nextAttemptAt) FROM submission WHERE state = ?",
                              arguments: [SubmissionState.queued.rawValue])
        }
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
