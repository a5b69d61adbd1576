import Foundation
import GRDB
import Postfach

/// The embedded ledger: one SQLite file (through GRDB) shared by the processes of one machine. Transitions are
/// single compare-and-set statements or short write transactions; SQLite serialises writers, so a claim never
/// hands one row to two processes.
public final class SQLiteLedger: LedgerStore {
    let database: DatabaseQueue
    public let identity: ProcessIdentity
    public var isShared: Bool { false }
    /// Wakes this process's waiting workers when it queues work itself, through any ledger instance of the same
    /// file (other processes are found by polling).
    private let wakeUps: WakeUps
    /// Outcomes of concurrent attempts, written together.
    private let finishes: CommitBatcher<Submission, Bool>
    /// The intake's writes (record, verdict, queueing) of concurrent callers, committed together: each in its own
    /// savepoint (one failing rolls back only itself), one flush to disk for the batch.
    private let intakeWrites: CommitBatcher<SQLiteWriteJob, SQLiteWriteOutcome>

    /// Opens (and migrates) the ledger at `path`; `:memory:` for a throwaway ledger. `readOnly` opens an existing
    /// ledger for listing without changing anything (no migration; a missing file lists as empty).
    public init(path: String, readOnly: Bool = false, identity: ProcessIdentity = .current) throws {
        self.identity = identity
        wakeUps = WakeUps.shared(for: path == ":memory:" ? UUID().uuidString : URL(fileURLWithPath: path).standardizedFileURL.path)
        let box = WeakSQLiteLedger()
        finishes = CommitBatcher { outcomes in
            guard let ledger = box.ledger else { throw LedgerError(code: "ledger.unavailable", message: "the ledger is closed") }
            return try await ledger.finishAll(outcomes)
        }
        intakeWrites = CommitBatcher(maximum: 64) { jobs in
            guard let ledger = box.ledger else { throw LedgerError(code: "ledger.unavailable", message: "the ledger is closed") }
            return try await ledger.run(jobs)
        }

        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // Write-ahead log: a commit appends to one file instead of creating and deleting a journal (over 3×
            // the intake rate of `serve`), and readers (`deliveries`) never block the writer. FULL: every commit is
            // on disk before the call returns.
            if !readOnly {
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "PRAGMA synchronous = FULL")
                // Purged payloads kept in the ledger are personal data: their pages in the database file are
                // overwritten, not just freed (the write-ahead log is truncated after a purge).
                try db.execute(sql: "PRAGMA secure_delete = ON")
            }
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
            box.ledger = self
            return
        }
        database = path == ":memory:" || readOnly ? try DatabaseQueue(configuration: configuration)
                                                  : try DatabaseQueue(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
        box.ledger = self
    }

    private static var migrator: DatabaseMigrator {
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
        migrator.registerMigration("v4-leases") { db in
            try db.alter(table: "submission") { t in
                t.add(column: "leaseToken", .text)
                t.add(column: "leaseUntil", .datetime)
            }
            // Queued rows held by a process of the previous version: released (their lease lived in the owner).
            try db.execute(sql: "UPDATE submission SET owner = NULL WHERE state = 'queued'")
            // Due work only: finished rows stay out of the index the claim reads.
            try db.execute(sql: """
                CREATE INDEX submission_due ON submission (nextAttemptAt, id) WHERE state = 'queued';
                CREATE INDEX submission_running ON submission (leaseUntil) WHERE state = 'running';
                """)
        }
        migrator.registerMigration("v5-service") { db in
            try db.alter(table: "submission") { t in
                t.add(column: "client", .text)
                t.add(column: "portalMetadata", .text)
                t.add(column: "findings", .text)
            }
            try db.create(table: "idempotencyKey") { t in
                t.column("client", .text).notNull()
                t.column("key", .text).notNull()
                t.column("reservedUntil", .datetime)
                t.column("requestSHA256", .text)
                t.column("submissionId", .integer)
                t.column("responseStatus", .integer)
                t.column("responseBody", .text)
                t.column("createdAt", .datetime).notNull()
                t.primaryKey(["client", "key"])
            }
        }
        migrator.registerMigration("v6-external-reference") { db in
            try db.alter(table: "submission") { t in t.add(column: "externalReference", .text) }
        }
        migrator.registerMigration("v7-confirmation") { db in
            try db.alter(table: "submission") { t in
                t.add(column: "confirmation", .text)
                t.add(column: "confirmationEvidence", .text)
                t.add(column: "confirmationDueAt", .datetime)
                t.add(column: "confirmedAt", .datetime)
            }
            // Only rows awaiting the receiver's answer: the checks read this index alone.
            try db.execute(sql: "CREATE INDEX submission_confirmation_due ON submission (confirmationDueAt, id) WHERE confirmation = 'pending'")
        }
        migrator.registerMigration("v8-payload") { db in
            // Small payloads of the service's intake (``SQLitePayloadStore``): kept here instead of a spool file.
            try db.create(table: "payload") { t in
                t.primaryKey("submissionId", .integer)
                t.column("bytes", .blob).notNull()
            }
        }
        return migrator
    }

    // MARK: Rows

    private static let columns = [
        "source", "receivedAt", "updatedAt", "state", "spoolPath", "payloadSHA256", "payloadSize", "messageId",
        "deliveryId", "schemaId", "routingKeys", "postfach", "routing", "reasonCode", "reason", "attempts",
        "nextAttemptAt", "receipt", "duplicateOf", "owner", "leaseToken", "leaseUntil", "purgedAt",
        "client", "portalMetadata", "findings", "externalReference", "confirmation", "confirmationEvidence",
        "confirmationDueAt", "confirmedAt",
    ]

    private static func values(_ s: Submission) -> [(any DatabaseValueConvertible)?] {
        [s.source, s.receivedAt, s.updatedAt, s.state.rawValue, s.payloadLocation, s.payloadSHA256, s.payloadSize,
         s.messageId, s.deliveryId, s.schemaId, s.routingKeys, s.postfach, s.routing, s.reasonCode, s.reason,
         s.attempts, s.nextAttemptAt, s.receipt, s.duplicateOf, s.owner, s.leaseToken, s.leaseUntil, s.purgedAt,
         s.client, s.portalMetadata, s.findings, s.externalReference, s.confirmation?.rawValue, s.confirmationEvidence,
         s.confirmationDueAt, s.confirmedAt]
    }

    private static func submission(_ row: Row) -> Submission {
        Submission(id: row["id"], source: row["source"], receivedAt: row["receivedAt"], updatedAt: row["updatedAt"],
                   state: SubmissionState(rawValue: row["state"]) ?? .dead, payloadLocation: row["spoolPath"],
                   payloadSHA256: row["payloadSHA256"], payloadSize: row["payloadSize"], messageId: row["messageId"],
                   deliveryId: row["deliveryId"], schemaId: row["schemaId"], routingKeys: row["routingKeys"],
                   postfach: row["postfach"], routing: row["routing"], reasonCode: row["reasonCode"],
                   reason: row["reason"], attempts: row["attempts"], nextAttemptAt: row["nextAttemptAt"],
                   receipt: row["receipt"], duplicateOf: row["duplicateOf"], owner: row["owner"],
                   leaseToken: row["leaseToken"], leaseUntil: row["leaseUntil"], purgedAt: row["purgedAt"],
                   client: row["client"], portalMetadata: row["portalMetadata"], findings: row["findings"],
                   externalReference: row["externalReference"],
                   confirmation: (row["confirmation"] as String?).flatMap(ConfirmationState.init(rawValue:)),
                   confirmationEvidence: row["confirmationEvidence"], confirmationDueAt: row["confirmationDueAt"],
                   confirmedAt: row["confirmedAt"])
    }

    private static func fetch(_ db: Database, sql: String, _ arguments: StatementArguments = []) throws -> [Submission] {
        try Row.fetchAll(try db.cachedStatement(sql: sql), arguments: arguments).map(submission)
    }

    private static func fetch(_ db: Database, id: Int64) throws -> Submission? {
        try fetch(db, sql: "SELECT * FROM submission WHERE id = ?", [id]).first
    }

    /// Writes every column of `row` where `condition` holds; true when it did.
    private static func write(_ db: Database, _ row: Submission, where condition: String,
                              _ arguments: StatementArguments) throws -> Bool {
        guard let id = row.id else { return false }
        try db.cachedStatement(sql: "UPDATE submission SET \(assignments) WHERE id = ? AND \(condition)")
            .execute(arguments: StatementArguments(values(row)) + [id] + arguments)
        return db.changesCount == 1
    }

    /// `column = ?, …` for every column, and the insert of a whole row: built once.
    private static let assignments = columns.map { "\($0) = ?" }.joined(separator: ", ")
    private static let insertRow =
        "INSERT INTO submission (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"

    /// GRDB's asynchronous write and read: every call waits its turn on the one connection (behind a group commit's
    /// flush, say) suspended, without holding a thread of the task pool, which runs every task of the process (two
    /// threads on a 2-core machine).
    private func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await database.write(body)
    }
    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await database.read(body)
    }

    /// `body` in the next group commit of intake writes (see ``intakeWrites``).
    private func groupWrite<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        switch try await intakeWrites.submit(SQLiteWriteJob { db in try body(db) }) {
        case .value(let value):
            guard let typed = value as? T else { throw LedgerError(code: "ledger.unavailable", message: "a write's result was lost") }
            return typed
        case .failure(let error):
            throw error
        }
    }

    /// One transaction for a batch of jobs, each in a savepoint of its own.
    private func run(_ jobs: [SQLiteWriteJob]) async throws -> [SQLiteWriteOutcome] {
        try await write { db in
            jobs.map { job in
                var outcome = SQLiteWriteOutcome.failure(LedgerError(code: "ledger.unavailable", message: "not written"))
                do {
                    try db.inSavepoint {
                        outcome = .value(try job.body(db))
                        return .commit
                    }
                } catch {
                    outcome = .failure(error)
                }
                return outcome
            }
        }
    }

    // MARK: Intake

    public func recordReceived(source: String, at date: Date, origin: IntakeOrigin) async throws -> Submission {
        let owner = identity.description
        return try await groupWrite { db in
            var row = Submission(source: source, receivedAt: date, owner: owner)
            row.client = origin.client
            row.portalMetadata = origin.portalMetadata
            try db.cachedStatement(sql: Self.insertRow).execute(arguments: StatementArguments(Self.values(row)))
            row.id = db.lastInsertedRowID
            return row
        }
    }

    public func update(_ submission: Submission, from expected: SubmissionState) async throws -> Bool {
        var row = submission
        row.updatedAt = Date()
        let saved = row, owner = identity.description
        return try await groupWrite { db in
            try Self.write(db, saved, where: "state = ? AND owner IS ?", [expected.rawValue, owner])
        }
    }

    public func adopt(_ observed: Submission, evenIfOwnerRuns: Bool) async throws -> Submission? {
        guard let id = observed.id, [.received, .validated].contains(observed.state),
              evenIfOwnerRuns || !ProcessIdentity.ownerIsAlive(observed.owner) else { return nil }
        return try await write { [self] db in
            try db.execute(sql: "UPDATE submission SET owner = ?, updatedAt = ? WHERE id = ? AND state = ? AND owner IS ?",
                           arguments: [identity.description, Date(), id, observed.state.rawValue, observed.owner])
            return db.changesCount == 1 ? try Self.fetch(db, id: id) : nil
        }
    }

    public func claimAndQueue(_ submission: Submission, leaseFor: Duration?,
                              from expected: SubmissionState) async throws -> Submission {
        let identity = identity
        let saved: Submission = try await groupWrite { db in
            let now = Date()
            var row = submission
            row.updatedAt = now
            guard let deliveryId = row.deliveryId, let id = row.id else { return row }
            try db.cachedStatement(sql: "INSERT OR IGNORE INTO deliveryClaim (deliveryId, submissionId) VALUES (?, ?)")
                .execute(arguments: [deliveryId, id])
            let holder = try Int64.fetchOne(try db.cachedStatement(sql: "SELECT submissionId FROM deliveryClaim WHERE deliveryId = ?"),
                                            arguments: [deliveryId]) ?? id
            if holder != id {
                let holderHash = try String.fetchOne(db, sql: "SELECT payloadSHA256 FROM submission WHERE id = ?",
                                                     arguments: [holder])
                row.markDuplicate(of: holder, sameHash: holderHash != nil && holderHash == row.payloadSHA256)
            } else if let leaseFor {
                row.lease(to: identity, token: UUID().uuidString, until: now.addingTimeInterval(leaseFor.seconds))
            } else {
                row.state = .queued
                row.nextAttemptAt = now
                row.owner = nil
            }
            guard try Self.write(db, row, where: "state = ? AND owner IS ?",
                                 [expected.rawValue, identity.description]) else {
                throw LedgerError(code: "ledger.lost-row", message: "submission \(id) was taken over by another process")
            }
            return row
        }
        if saved.state == .queued { wakeUps.signal() }
        return saved
    }

    // MARK: Delivery queue

    public func claimDue(limit: Int, dueBy: Date?, leaseFor: Duration) async throws -> [Submission] {
        guard limit > 0 else { return [] }
        let now = Date()
        let until = now.addingTimeInterval(leaseFor.seconds)
        let owner = identity.description
        // In the next group commit, beside the intake's writes: one flush for both.
        return try await groupWrite { db in
            // One statement: SQLite's single writer makes the select-and-update atomic.
            let rows = try Self.fetch(db, sql: """
                UPDATE submission
                SET state = 'running', attempts = attempts + 1, leaseToken = lower(hex(randomblob(16))),
                    leaseUntil = ?, owner = ?, updatedAt = ?
                WHERE id IN (SELECT id FROM submission WHERE state = 'queued' AND nextAttemptAt <= ?
                             ORDER BY nextAttemptAt, id LIMIT ?)
                RETURNING *
                """, [until, owner, now, dueBy ?? now, limit])
            return rows.sorted { ($0.nextAttemptAt ?? now, $0.id ?? 0) < ($1.nextAttemptAt ?? now, $1.id ?? 0) }
        }
    }

    public func extendLeases(_ leased: [Submission], by: Duration) async throws -> Set<Int64> {
        let until = Date().addingTimeInterval(by.seconds)
        return try await write { db in
            var held: Set<Int64> = []
            for row in leased {
                guard let id = row.id, let token = row.leaseToken else { continue }
                try db.execute(sql: "UPDATE submission SET leaseUntil = ? WHERE id = ? AND state = 'running' AND leaseToken = ?",
                               arguments: [until, id, token])
                if db.changesCount == 1 { held.insert(id) }
            }
            return held
        }
    }

    public func finishAttempt(_ outcome: Submission) async throws -> Bool {
        guard outcome.id != nil, outcome.leaseToken != nil else { return false }
        return try await finishes.submit(outcome)
    }

    /// Records many outcomes in one transaction (one flush to disk), each fenced by its own token.
    private func finishAll(_ outcomes: [Submission]) async throws -> [Bool] {
        let now = Date()
        let written = try await write { db in
            try outcomes.map { outcome in
                try db.cachedStatement(sql: """
                    UPDATE submission SET state = ?, reasonCode = ?, reason = ?, nextAttemptAt = ?, receipt = ?,
                        confirmation = ?, confirmationDueAt = ?, owner = NULL, leaseToken = NULL, leaseUntil = NULL,
                        updatedAt = ?
                    WHERE id = ? AND state = 'running' AND leaseToken = ?
                    """).execute(arguments: [outcome.state.rawValue, outcome.reasonCode, outcome.reason, outcome.nextAttemptAt,
                                     outcome.receipt, outcome.confirmation?.rawValue, outcome.confirmationDueAt, now,
                                     outcome.id, outcome.leaseToken])
                return db.changesCount == 1
            }
        }
        if zip(outcomes, written).contains(where: { $1 && $0.state == .queued }) { wakeUps.signal() }
        return written
    }

    public func release(_ leased: Submission) async throws -> Bool {
        guard let id = leased.id, let token = leased.leaseToken else { return false }
        let released = try await write { db in
            try db.execute(sql: """
                UPDATE submission SET state = 'queued', attempts = max(attempts - 1, 0), nextAttemptAt = ?, owner = NULL,
                    leaseToken = NULL, leaseUntil = NULL, updatedAt = ?
                WHERE id = ? AND state = 'running' AND leaseToken = ?
                """, arguments: [Date(), Date(), id, token])
            return db.changesCount == 1
        }
        if released { wakeUps.signal() }
        return released
    }

    public func recordReference(_ leased: Submission, reference: String) async throws -> Bool {
        guard let id = leased.id, let token = leased.leaseToken else { return false }
        return try await write { db in
            try db.execute(sql: """
                UPDATE submission SET externalReference = ?, updatedAt = ?
                WHERE id = ? AND state = 'running' AND leaseToken = ? AND leaseUntil > ?
                """, arguments: [reference, Date(), id, token, Date()])
            return db.changesCount == 1
        }
    }

    public func dueConfirmations(limit: Int, recheckAfter: Duration) async throws -> [Submission] {
        guard limit > 0 else { return [] }
        let now = Date()
        return try await write { db in
            try Self.fetch(db, sql: """
                UPDATE submission SET confirmationDueAt = ?
                WHERE id IN (SELECT id FROM submission WHERE confirmation = 'pending' AND confirmationDueAt <= ?
                             ORDER BY confirmationDueAt, id LIMIT ?)
                RETURNING *
                """, [now.addingTimeInterval(recheckAfter.seconds), now, limit]).sorted { ($0.id ?? 0) < ($1.id ?? 0) }
        }
    }

    public func recordConfirmation(_ answered: Submission) async throws -> Bool {
        guard let id = answered.id else { return false }
        return try await write { db in
            try db.execute(sql: """
                UPDATE submission SET confirmation = ?1, confirmationEvidence = ?2, confirmedAt = ?3,
                    confirmationDueAt = CASE WHEN ?1 = 'pending' THEN confirmationDueAt END,
                    reasonCode = ?4, reason = ?5, updatedAt = ?6
                WHERE id = ?7 AND state = 'delivered' AND confirmation = 'pending'
                """, arguments: [answered.confirmation?.rawValue, answered.confirmationEvidence, answered.confirmedAt,
                                 answered.reasonCode, answered.reason, Date(), id])
            return db.changesCount == 1
        }
    }

    public func requeueExpiredLeases() async throws -> [Submission] {
        let now = Date()
        let rows = try await write { db in
            try Self.fetch(db, sql: """
                UPDATE submission SET state = 'queued', nextAttemptAt = ?, owner = NULL, leaseToken = NULL,
                    leaseUntil = NULL, updatedAt = ?
                WHERE state = 'running' AND leaseUntil < ?
                RETURNING *
                """, [now, now, now])
        }
        if !rows.isEmpty { wakeUps.signal() }
        return rows
    }

    public func rescue(_ observed: Submission) async throws -> Submission? {
        guard let id = observed.id, observed.state == .running, let token = observed.leaseToken else { return nil }
        let row = try await write { db in
            try Self.fetch(db, sql: """
                UPDATE submission SET state = 'queued', nextAttemptAt = ?, owner = NULL, leaseToken = NULL,
                    leaseUntil = NULL, updatedAt = ?
                WHERE id = ? AND state = 'running' AND leaseToken = ?
                RETURNING *
                """, [Date(), Date(), id, token]).first
        }
        if row != nil { wakeUps.signal() }
        return row
    }

    public func requeue(_ observed: Submission) async throws -> Submission? {
        guard let id = observed.id, [.dead, .queued].contains(observed.state) else { return nil }
        let row = try await write { db in
            try Self.fetch(db, sql: """
                UPDATE submission SET state = 'queued', attempts = 0, nextAttemptAt = ?, owner = NULL, updatedAt = ?
                WHERE id = ? AND state = ? AND purgedAt IS NULL
                RETURNING *
                """, [Date(), Date(), id, observed.state.rawValue]).first
        }
        if row != nil { wakeUps.signal() }
        return row
    }

    public func nextAttempt() async throws -> Date? {
        try await read { db in
            let due = try Date.fetchOne(db, sql: "SELECT MIN(nextAttemptAt) FROM submission WHERE state = 'queued'")
            let expiry = try Date.fetchOne(db, sql: "SELECT MIN(leaseUntil) FROM submission WHERE state = 'running'")
            return [due, expiry].compactMap { $0 }.min()
        }
    }

    public func waitForWork(upTo timeout: Duration) async {
        await wakeUps.wait(upTo: timeout)
    }

    // MARK: Reading

    public func submission(_ id: Int64) async throws -> Submission? {
        try await read { db in try Self.fetch(db, id: id) }
    }

    public func submissions(states: [SubmissionState]? = nil, limit: Int? = nil) async throws -> [Submission] {
        try await read { db in
            var sql = "SELECT * FROM submission"
            var arguments: StatementArguments = []
            if let states {
                sql += " WHERE state IN (\(states.map { _ in "?" }.joined(separator: ", ")))"
                arguments += StatementArguments(states.map(\.rawValue))
            }
            sql += " ORDER BY id"
            if let limit { sql += " LIMIT ?"; arguments += [limit] }
            return try Self.fetch(db, sql: sql, arguments)
        }
    }

    public func counts() async throws -> [SubmissionState: Int] {
        try await read { db in
            var result: [SubmissionState: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM submission GROUP BY state") {
                if let state = SubmissionState(rawValue: row["state"]) { result[state] = row["n"] }
            }
            return result
        }
    }

    public func queueByPostfach() async throws -> [PostfachQueue] {
        try await read { db in
            var queues: [String: PostfachQueue] = [:]
            for row in try Row.fetchAll(db, sql: """
                SELECT postfach, state, COUNT(*) AS n, MIN(nextAttemptAt) AS due FROM submission
                WHERE state IN ('queued', 'running') AND postfach IS NOT NULL GROUP BY postfach, state
                """) {
                let postfach: String = row["postfach"]
                var queue = queues[postfach] ?? PostfachQueue(postfach: postfach, queued: 0, running: 0, oldestDue: nil)
                if row["state"] == "queued" {
                    queue.queued = row["n"]
                    queue.oldestDue = row["due"]
                } else {
                    queue.running = row["n"]
                }
                queues[postfach] = queue
            }
            return queues.values.sorted { $0.postfach < $1.postfach }
        }
    }

    public func newestID() async throws -> Int64 {
        try await read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM submission") ?? 0 }
    }

    // MARK: Retention

    public func unpurged(state: SubmissionState, finishedBefore date: Date) async throws -> [Submission] {
        guard state.isFinal else { return [] }
        return try await read { db in
            try Self.fetch(db, sql: "SELECT * FROM submission WHERE state = ? AND purgedAt IS NULL AND updatedAt < ? ORDER BY id",
                           [state.rawValue, date])
        }
    }

    public func markPurged(_ observed: Submission, cutoff: Date, at date: Date) async throws -> Submission? {
        guard let id = observed.id, observed.state.isFinal else { return nil }
        return try await write { db in
            try Self.fetch(db, sql: """
                UPDATE submission SET purgedAt = ? WHERE id = ? AND state = ? AND purgedAt IS NULL AND updatedAt < ?
                RETURNING *
                """, [date, id, observed.state.rawValue, cutoff]).first
        }
    }

    public func purgedWithPayload() async throws -> [Submission] {
        try await read { db in
            try Self.fetch(db, sql: "SELECT * FROM submission WHERE purgedAt IS NOT NULL AND spoolPath IS NOT NULL")
        }
    }

    public func forgetPayloadLocation(_ row: Submission) async throws {
        guard let id = row.id else { return }
        try await write { db in
            try db.execute(sql: "UPDATE submission SET spoolPath = NULL WHERE id = ? AND purgedAt IS NOT NULL", arguments: [id])
        }
    }

    // MARK: Payloads kept in the ledger (SQLitePayloadStore)

    /// Keeps `bytes` as the payload of `submission` (replacing an earlier one), in the next group commit of
    /// intake writes: on disk when this returns.
    func keepPayload(_ bytes: [UInt8], submission: Int64) async throws {
        let blob = Data(bytes)
        try await groupWrite { db in
            try db.cachedStatement(sql: "INSERT OR REPLACE INTO payload (submissionId, bytes) VALUES (?, ?)")
                .execute(arguments: [submission, blob])
        }
    }

    /// The payload of `submission` kept in the ledger, or nil.
    func payload(of submission: Int64) async throws -> [UInt8]? {
        try await read { db in
            try Data.fetchOne(try db.cachedStatement(sql: "SELECT bytes FROM payload WHERE submissionId = ?"),
                              arguments: [submission])
                .map { [UInt8]($0) }
        }
    }

    /// Deletes the payload of `submission` kept in the ledger (none counts as deleted).
    func removePayload(of submission: Int64) async throws {
        try await write { db in
            try db.cachedStatement(sql: "DELETE FROM payload WHERE submissionId = ?").execute(arguments: [submission])
        }
    }

    /// Deletes the payloads of purged rows still in the table, then checkpoints and truncates the write-ahead log:
    /// a deleted payload's pages are overwritten in the database file (`secure_delete`), but frames written before
    /// stay in the log until it is truncated.
    func sweepPurgedPayloads() async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM payload WHERE submissionId IN (SELECT id FROM submission WHERE purgedAt IS NOT NULL)")
        }
        try await database.writeWithoutTransaction { db in
            _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    // MARK: Idempotency keys

    public func reserveIdempotencyKey(client: String, key: String,
                                      for duration: Duration) async throws -> IdempotencyReservation {
        try await write { db in
            let now = Date()
            let until = now.addingTimeInterval(duration.seconds)
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM idempotencyKey WHERE client = ? AND key = ?",
                                             arguments: [client, key]) else {
                try db.execute(sql: "INSERT INTO idempotencyKey (client, key, reservedUntil, createdAt) VALUES (?, ?, ?, ?)",
                               arguments: [client, key, until, now])
                return .reserved
            }
            if let status: Int = row["responseStatus"] {
                return .completed(IdempotencyOutcome(requestSHA256: row["requestSHA256"] ?? "",
                                                     submission: row["submissionId"] ?? 0, responseStatus: status,
                                                     responseBody: row["responseBody"] ?? ""))
            }
            if let reserved: Date = row["reservedUntil"], reserved > now { return .inFlight }
            try db.execute(sql: "UPDATE idempotencyKey SET reservedUntil = ? WHERE client = ? AND key = ?",
                           arguments: [until, client, key])
            return .reserved
        }
    }

    public func completeIdempotencyKey(client: String, key: String, outcome: IdempotencyOutcome) async throws {
        try await write { db in
            try db.execute(sql: """
                UPDATE idempotencyKey SET reservedUntil = NULL, requestSHA256 = ?, submissionId = ?, responseStatus = ?,
                    responseBody = ?, createdAt = ?
                WHERE client = ? AND key = ?
                """, arguments: [outcome.requestSHA256, outcome.submission, outcome.responseStatus, outcome.responseBody,
                                 Date(), client, key])
        }
    }

    public func releaseIdempotencyKey(client: String, key: String) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM idempotencyKey WHERE client = ? AND key = ? AND responseStatus IS NULL",
                           arguments: [client, key])
        }
    }

    public func purgeIdempotencyKeys(completedBefore date: Date) async throws -> Int {
        try await write { db in
            try db.execute(sql: "DELETE FROM idempotencyKey WHERE responseStatus IS NOT NULL AND createdAt < ?",
                           arguments: [date])
            return db.changesCount
        }
    }

    public func close() async {}

    /// Writes a row as given, unconditionally: for tests that stage a crash's leftovers.
    func overwrite(_ row: Submission) throws {
        _ = try database.write { db in try Self.write(db, row, where: "1", []) }
    }
}

/// The ledger as its batcher sees it (no retain cycle).
final class WeakSQLiteLedger: @unchecked Sendable {
    // Safety: written once in the ledger's initialiser, before the batcher can run.
    weak var ledger: SQLiteLedger?
}

extension Submission {
    /// The state a row takes when another row owns its delivery id.
    public mutating func markDuplicate(of holder: Int64, sameHash: Bool) {
        duplicateOf = holder
        owner = nil
        if sameHash {
            state = .duplicate
            reasonCode = "ledger.duplicate"
            reason = "the delivery id was accepted before as submission \(holder)"
        } else {
            state = .conflict
            reasonCode = "ledger.id-conflict"
            reason = "the delivery id was accepted before as submission \(holder) with a different payload; "
                + "kept, not delivered under this id"
        }
    }

    /// The row as claimed for an attempt by `identity`.
    public mutating func lease(to identity: ProcessIdentity, token: String, until: Date) {
        state = .running
        attempts += 1
        owner = identity.description
        leaseToken = token
        leaseUntil = until
    }

    /// The row with its lease given back (after an attempt's outcome is set).
    public mutating func releaseLease() {
        owner = nil
        leaseToken = nil
        leaseUntil = nil
    }
}

/// Wakes tasks of this process that wait for work: a signal with no waiter is kept for the next wait.
public final class WakeUps: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
    private var pending = false

    public init() {}

    // Safety: every access holds `registryLock`.
    nonisolated(unsafe) private static var registry: [String: WakeUps] = [:]
    private static let registryLock = NSLock()

    /// The one instance of this process for `key` (a database file).
    public static func shared(for key: String) -> WakeUps {
        registryLock.lock(); defer { registryLock.unlock() }
        if let existing = registry[key] { return existing }
        let created = WakeUps()
        registry[key] = created
        return created
    }

    /// Wakes every waiting task (or the next one to wait).
    public func signal() {
        lock.lock()
        let woken = waiters
        waiters = [:]
        if woken.isEmpty { pending = true }
        lock.unlock()
        for continuation in woken.values { continuation.resume() }
    }

    /// Returns at the next signal, after `timeout`, or when the task is cancelled.
    public func wait(upTo timeout: Duration) async {
        let key = UUID()
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                lock.lock()
                if pending || Task.isCancelled {
                    pending = false
                    lock.unlock()
                    continuation.resume()
                    return
                }
                waiters[key] = continuation
                lock.unlock()
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout.seconds) { [weak self] in
                    self?.resume(key)
                }
            }
        } onCancel: {
            resume(key)
        }
    }

    private func resume(_ key: UUID) {
        lock.lock()
        let continuation = waiters.removeValue(forKey: key)
        lock.unlock()
        continuation?.resume()
    }
}

/// A write handed to the intake's group commit.
struct SQLiteWriteJob: Sendable {
    let body: @Sendable (Database) throws -> any Sendable
}

/// What one job of a group commit gave.
enum SQLiteWriteOutcome: Sendable {
    case value(any Sendable)
    case failure(any Error)
}
