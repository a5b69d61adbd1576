import AmtsbotePipeline
import Foundation
import Logging
import Postfach
import PostgresNIO

/// The shared ledger on PostgreSQL: any number of intake processes and delivery workers, on any number of
/// machines, work on one database. Claims take due rows with `FOR UPDATE SKIP LOCKED` in one short transaction
/// (never waiting for rows another worker claims); leases and due times use the database's clock, so machines need
/// not agree on the time; a `NOTIFY` wakes idle workers when work is queued (they poll too, since notifications
/// can be lost); the delivery id is unique by index.
public final class PostgresLedger: LedgerStore {
    public let identity: ProcessIdentity
    public var isShared: Bool { true }
    public let configuration: PostgresLedgerConfiguration
    /// The connection pool (for operators' own queries, e.g. monitoring).
    public let client: PostgresClient
    let logger: Logger
    private let running: Task<Void, Never>
    private let wakeUps = WakeUps()
    private let listener = ListenerState()
    /// Outcomes of concurrent attempts, written together.
    private let finishes: CommitBatcher<Submission, Bool>
    static let channel = "amtsbote_due"

    private init(configuration: PostgresLedgerConfiguration, identity: ProcessIdentity, logger: Logger) {
        self.configuration = configuration
        self.identity = identity
        self.logger = logger
        // The pool's own background messages (connection churn, "run() not yet called" while it starts) are no
        // business of the user's log unless they are errors.
        var background = Logger(label: "amtsbote.ledger.pool")
        background.logLevel = .error
        let client = PostgresClient(configuration: configuration.client, backgroundLogger: background)
        self.client = client
        running = Task { await client.run() }
        let box = WeakLedger()
        finishes = CommitBatcher(minimumInterval: configuration.outcomeBatchInterval) { outcomes in
            guard let ledger = box.ledger else { throw LedgerError(code: "ledger.unavailable", message: "the ledger is closed") }
            return try await ledger.finishAll(outcomes)
        }
        box.ledger = self
    }

    /// Connects, migrates (one process at a time, under an advisory lock) and returns the ledger. A database that
    /// cannot be reached is a ``LedgerError`` `ledger.unavailable` naming the server (never the password).
    public static func open(_ configuration: PostgresLedgerConfiguration, identity: ProcessIdentity = .current,
                            logger: Logger = Logger(label: "amtsbote.ledger")) async throws -> PostgresLedger {
        // One direct connection first: a server that refuses, or a wrong password, is said at once (the pool would
        // keep trying in the background).
        do {
            let probe = try await PostgresConnection.connect(configuration: try configuration.connection, id: 0, logger: logger)
            try? await probe.close()
        } catch {
            throw LedgerError(code: "ledger.unavailable",
                              message: "cannot use the ledger at \(configuration.displayURL): \(Self.describe(error))")
        }
        let ledger = PostgresLedger(configuration: configuration, identity: identity, logger: logger)
        do {
            try await PostgresSchema.migrate(ledger.client, logger: logger)
        } catch {
            await ledger.close()
            throw LedgerError(code: "ledger.unavailable",
                              message: "cannot use the ledger at \(configuration.displayURL): \(Self.describe(error))")
        }
        return ledger
    }

    // MARK: Idempotency keys

    public func reserveIdempotencyKey(client: String, key: String,
                                      for duration: Duration) async throws -> IdempotencyReservation {
        let milliseconds = duration.milliseconds
        return try await run { [self] in
            // Inserted, or taken over from a reservation whose time ran out: ours. Otherwise the row says what holds it.
            let taken = try await self.client.query("""
                INSERT INTO idempotency_key (client, key, reserved_until, created_at)
                VALUES (\(client), \(key), clock_timestamp() + \(milliseconds) * interval '1 millisecond', clock_timestamp())
                ON CONFLICT (client, key) DO UPDATE SET reserved_until = EXCLUDED.reserved_until
                    WHERE idempotency_key.response_status IS NULL AND idempotency_key.reserved_until < clock_timestamp()
                RETURNING client
                """, logger: logger)
            for try await _ in taken { return .reserved }
            let rows = try await self.client.query("""
                SELECT request_sha256, submission_id, response_status, response_body FROM idempotency_key
                WHERE client = \(client) AND key = \(key)
                """, logger: logger)
            for try await row in rows {
                let r = row.makeRandomAccess()
                guard let status = try r[2].decode(Int32?.self) else { return .inFlight }
                return .completed(IdempotencyOutcome(requestSHA256: try r[0].decode(String?.self) ?? "",
                                                     submission: try r[1].decode(Int64?.self) ?? 0,
                                                     responseStatus: Int(status),
                                                     responseBody: try r[3].decode(String?.self) ?? ""))
            }
            return .inFlight  // released between the two statements: the caller may try again
        }
    }

    public func completeIdempotencyKey(client: String, key: String, outcome: IdempotencyOutcome) async throws {
        try await run { [self] in
            _ = try await self.client.query("""
                UPDATE idempotency_key SET reserved_until = NULL, request_sha256 = \(outcome.requestSHA256),
                    submission_id = \(outcome.submission), response_status = \(Int32(outcome.responseStatus)),
                    response_body = \(outcome.responseBody), created_at = clock_timestamp()
                WHERE client = \(client) AND key = \(key)
                """, logger: logger)
        }
    }

    public func releaseIdempotencyKey(client: String, key: String) async throws {
        try await run { [self] in
            _ = try await self.client.query("""
                DELETE FROM idempotency_key WHERE client = \(client) AND key = \(key) AND response_status IS NULL
                """, logger: logger)
        }
    }

    public func purgeIdempotencyKeys(completedBefore date: Date) async throws -> Int {
        try await run { [self] in
            var count = 0
            for try await _ in try await self.client.query("""
                DELETE FROM idempotency_key WHERE response_status IS NOT NULL AND created_at < \(date) RETURNING key
                """, logger: logger) { count += 1 }
            return count
        }
    }

    public func close() async {
        listener.stop()
        running.cancel()
        _ = await running.value
    }

    /// A server error's own message (postgres-nio's description hides it by default).
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            if let underlying = error.underlying { return "\(error.code): \(underlying)" }
            return "\(error.code)"
        }
        if let error = error as? PostgresTransactionError {
            return describe(error.closureError ?? error.commitError ?? error.beginError ?? error)
        }
        return "\(error)"
    }

    /// Runs `body`, turning connection and server errors into `ledger.unavailable`. A call that does not end
    /// within twice the statement timeout and 30 s more (a connection that died without a word) is given up the
    /// same way; the margin keeps a loaded machine, where answers wait for a thread, from tripping it.
    func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let url = configuration.displayURL
        let limit = configuration.statementTimeout * 2 + .seconds(30)
        do {
            return try await withDeadline(limit, onTimeout: {
                LedgerError(code: "ledger.unavailable", message: "ledger at \(url): no answer within \(limit)")
            }, body)
        } catch let error as LedgerError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw LedgerError(code: "ledger.unavailable",
                              message: "ledger at \(configuration.displayURL): \(Self.describe(error))")
        }
    }

    // MARK: Rows

    static let columns = """
        id, source, received_at, updated_at, state, payload_location, payload_sha256, payload_size, message_id,
        delivery_id, schema_id, routing_keys, postfach, routing, reason_code, reason, attempts, next_attempt_at,
        receipt, duplicate_of, owner, lease_token, lease_until, purged_at, client, portal_metadata, findings,
        external_reference, confirmation, confirmation_evidence, confirmation_due_at, confirmed_at
        """

    /// ``columns`` with each name prefixed (`s.id, s.source, …`), on one line.
    static func columns(prefixedWith prefix: String) -> String {
        columns.replacingOccurrences(of: "\n", with: " ").split(separator: ",")
            .map { prefix + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")
    }

    /// A row of ``columns``, decoded by position (in the order of ``columns``: no lookup by name per cell).
    static func submission(_ row: PostgresRow) throws -> Submission {
        let r = row.makeRandomAccess()
        return Submission(
            id: try r[0].decode(Int64.self), source: try r[1].decode(String.self),
            receivedAt: try r[2].decode(Date.self), updatedAt: try r[3].decode(Date.self),
            state: SubmissionState(rawValue: try r[4].decode(String.self)) ?? .dead,
            payloadLocation: try r[5].decode(String?.self), payloadSHA256: try r[6].decode(String?.self),
            payloadSize: try r[7].decode(Int64?.self), messageId: try r[8].decode(String?.self),
            deliveryId: try r[9].decode(String?.self), schemaId: try r[10].decode(String?.self),
            routingKeys: try r[11].decode(String?.self), postfach: try r[12].decode(String?.self),
            routing: try r[13].decode(String?.self), reasonCode: try r[14].decode(String?.self),
            reason: try r[15].decode(String?.self), attempts: Int(try r[16].decode(Int32.self)),
            nextAttemptAt: try r[17].decode(Date?.self), receipt: try r[18].decode(String?.self),
            duplicateOf: try r[19].decode(Int64?.self), owner: try r[20].decode(String?.self),
            leaseToken: try r[21].decode(String?.self), leaseUntil: try r[22].decode(Date?.self),
            purgedAt: try r[23].decode(Date?.self), client: try r[24].decode(String?.self),
            portalMetadata: try r[25].decode(String?.self), findings: try r[26].decode(String?.self),
            externalReference: try r[27].decode(String?.self),
            confirmation: try r[28].decode(String?.self).flatMap(ConfirmationState.init(rawValue:)),
            confirmationEvidence: try r[29].decode(String?.self), confirmationDueAt: try r[30].decode(Date?.self),
            confirmedAt: try r[31].decode(Date?.self))
    }

    static func rows(_ sequence: PostgresRowSequence) async throws -> [Submission] {
        var result: [Submission] = []
        for try await row in sequence { result.append(try submission(row)) }
        return result
    }

    func fetch(_ query: PostgresQuery) async throws -> [Submission] {
        try await run { [self] in try await Self.rows(try await client.query(query, logger: logger)) }
    }

    /// Writes every column of `row` where the row is still `expected` and owned by `owner`; true when it changed.
    static func writeAll(_ row: Submission, on connection: PostgresConnection, logger: Logger,
                         expected: SubmissionState, owner: String) async throws -> Bool {
        guard let id = row.id else { return false }
        let statement = WriteRowStatement(row: row, id: id, expected: expected, owner: owner)
        for try await _ in try await connection.execute(statement, logger: logger) { return true }
        return false
    }

    // MARK: Intake

    public func recordReceived(source: String, at date: Date, origin: IntakeOrigin) async throws -> Submission {
        let statement = RecordReceivedStatement(source: source, receivedAt: date, owner: identity.description, origin: origin)
        let row = try await run { [self] () -> Submission? in
            for try await row in try await client.execute(statement, logger: logger) { return row }
            return nil
        }
        guard let row else { throw LedgerError(code: "ledger.unavailable", message: "no row recorded") }
        return row
    }

    public func update(_ submission: Submission, from expected: SubmissionState) async throws -> Bool {
        guard let id = submission.id else { return false }
        let statement = WriteRowStatement(row: submission, id: id, expected: expected, owner: identity.description)
        return try await run { [self] in
            for try await _ in try await client.execute(statement, logger: logger) { return true }
            return false
        }
    }

    public func adopt(_ observed: Submission, evenIfOwnerRuns: Bool) async throws -> Submission? {
        guard let id = observed.id, [.received, .validated].contains(observed.state),
              evenIfOwnerRuns || !ProcessIdentity.ownerIsAlive(observed.owner) else { return nil }
        let me = identity.description
        return try await fetch("""
            UPDATE submission SET owner = \(me), updated_at = clock_timestamp()
            WHERE id = \(id) AND state = \(observed.state.rawValue) AND owner IS NOT DISTINCT FROM \(observed.owner)
            RETURNING \(unescaped: Self.columns)
            """).first
    }

    public func claimAndQueue(_ submission: Submission, leaseFor: Duration?,
                              from expected: SubmissionState) async throws -> Submission {
        guard let deliveryId = submission.deliveryId, let id = submission.id else { return submission }
        let me = identity.description
        // The common case, one statement: the delivery id is new and the row still this process's.
        var first = submission
        if leaseFor != nil {
            first.lease(to: identity, token: UUID().uuidString, until: Date())  // lease_until: the database's clock
        } else {
            first.state = .queued
            first.owner = nil
        }
        let statement = QueueClaimedStatement(row: first, id: id, expected: expected, owner: me, deliveryId: deliveryId,
                                              leaseSeconds: leaseFor?.inSeconds ?? 0)
        let queued = try await run { [self] () -> Submission? in
            for try await row in try await client.execute(statement, logger: logger) { return row }
            return nil
        }
        if let queued { return queued }
        // A duplicate (the delivery id is held) or a row taken over: settled in a transaction, statement by statement.
        let saved: Submission = try await run { [self] in
            try await client.withTransaction(logger: logger) { connection in
                var row = submission
                // The unique key on delivery_claim decides, race-free: the first insert wins, every later one
                // finds the holder.
                var holder = id
                let inserted = try await connection.query("""
                    INSERT INTO delivery_claim (delivery_id, submission_id) VALUES (\(deliveryId), \(id))
                    ON CONFLICT (delivery_id) DO NOTHING RETURNING submission_id
                    """, logger: logger)
                var won = false
                for try await _ in inserted { won = true }
                if !won {
                    let found = try await connection.query("""
                        SELECT c.submission_id, s.payload_sha256 FROM delivery_claim c
                        LEFT JOIN submission s ON s.id = c.submission_id WHERE c.delivery_id = \(deliveryId)
                        """, logger: logger)
                    var holderHash: String?
                    for try await (owner, hash) in found.decode((Int64, String?).self) { holder = owner; holderHash = hash }
                    if holder != id {
                        row.markDuplicate(of: holder, sameHash: holderHash != nil && holderHash == row.payloadSHA256)
                    }
                }
                if holder == id {
                    if leaseFor != nil {
                        // Lease times on the database's clock, like every claim.
                        row.lease(to: identity, token: UUID().uuidString, until: Date())
                    } else {
                        row.state = .queued
                        row.owner = nil
                    }
                }
                guard try await Self.writeAll(row, on: connection, logger: logger, expected: expected, owner: me) else {
                    throw LedgerError(code: "ledger.lost-row", message: "submission \(id) was taken over by another process")
                }
                let seconds = leaseFor?.inSeconds ?? 0
                let times = try await connection.query("""
                    UPDATE submission SET
                        next_attempt_at = CASE WHEN state = 'queued' THEN clock_timestamp() ELSE next_attempt_at END,
                        lease_until = CASE WHEN state = 'running'
                                      THEN clock_timestamp() + make_interval(secs => \(seconds)) END
                    WHERE id = \(id) RETURNING \(unescaped: Self.columns)
                    """, logger: logger)
                let stored = try await Self.rows(times).first ?? row
                if stored.state == .queued { try await connection.query("NOTIFY \(unescaped: Self.channel)", logger: logger) }
                return stored
            }
        }
        return saved
    }

    // MARK: Delivery queue

    public func claimDue(limit: Int, dueBy: Date?, leaseFor: Duration) async throws -> [Submission] {
        guard limit > 0 else { return [] }
        let statement = ClaimDueStatement(dueBy: dueBy, limit: Int64(limit), leaseSeconds: leaseFor.inSeconds,
                                          owner: identity.description)
        let rows = try await run { [self] in
            var rows: [Submission] = []
            for try await row in try await client.execute(statement, logger: logger) { rows.append(row) }
            return rows
        }
        return rows.sorted { ($0.id ?? 0) < ($1.id ?? 0) }
    }

    public func extendLeases(_ leased: [Submission], by: Duration) async throws -> Set<Int64> {
        let pairs = leased.compactMap { row in row.id.flatMap { id in row.leaseToken.map { (id, $0) } } }
        guard !pairs.isEmpty else { return [] }
        let statement = ExtendLeasesStatement(ids: pairs.map(\.0), tokens: pairs.map(\.1), leaseSeconds: by.inSeconds)
        return try await run { [self] in
            var held: Set<Int64> = []
            for try await id in try await client.execute(statement, logger: logger) { held.insert(id) }
            return held
        }
    }

    public func finishAttempt(_ outcome: Submission) async throws -> Bool {
        guard outcome.id != nil, outcome.leaseToken != nil else { return false }
        return try await finishes.submit(outcome)
    }

    /// Records many outcomes in one statement (one round trip, one commit), each fenced by its own token, with a
    /// wake-up for the other workers when a row is due again. Returns, in order, whether each was recorded.
    func finishAll(_ outcomes: [Submission]) async throws -> [Bool] {
        let statement = FinishAttemptsStatement(outcomes: outcomes)
        let recorded = try await run { [self] in
            var done: Set<Int64> = []
            for try await id in try await client.execute(statement, logger: logger) { done.insert(id) }
            return done
        }
        return outcomes.map { recorded.contains($0.id ?? -1) }
    }

    public func release(_ leased: Submission) async throws -> Bool {
        guard let id = leased.id, let token = leased.leaseToken else { return false }
        return try await !fetch("""
            WITH released AS (
                UPDATE submission SET state = 'queued', attempts = GREATEST(attempts - 1, 0),
                    next_attempt_at = clock_timestamp(), owner = NULL, lease_token = NULL, lease_until = NULL,
                    updated_at = clock_timestamp()
                WHERE id = \(id) AND state = 'running' AND lease_token = \(token)
                RETURNING \(unescaped: Self.columns)
            ), woken AS (SELECT pg_notify('\(unescaped: Self.channel)', '') FROM released)
            SELECT released.* FROM released, woken
            """).isEmpty
    }

    public func recordReference(_ leased: Submission, reference: String) async throws -> Bool {
        guard let id = leased.id, let token = leased.leaseToken else { return false }
        return try await !fetch("""
            UPDATE submission SET external_reference = \(reference), updated_at = clock_timestamp()
            WHERE id = \(id) AND state = 'running' AND lease_token = \(token) AND lease_until > clock_timestamp()
            RETURNING \(unescaped: Self.columns)
            """).isEmpty
    }

    public func dueConfirmations(limit: Int, recheckAfter: Duration) async throws -> [Submission] {
        guard limit > 0 else { return [] }
        let limit = Int64(limit), seconds = recheckAfter.inSeconds
        return try await fetch("""
            UPDATE submission s SET confirmation_due_at = clock_timestamp() + make_interval(secs => \(seconds))
            WHERE s.id = ANY(ARRAY(
                SELECT id FROM submission WHERE confirmation = 'pending' AND confirmation_due_at <= clock_timestamp()
                ORDER BY confirmation_due_at, id LIMIT \(limit) FOR UPDATE SKIP LOCKED))
            RETURNING \(unescaped: Self.columns(prefixedWith: "s."))
            """).sorted { ($0.id ?? 0) < ($1.id ?? 0) }
    }

    public func recordConfirmation(_ answered: Submission) async throws -> Bool {
        guard let id = answered.id else { return false }
        return try await !fetch("""
            UPDATE submission SET confirmation = \(answered.confirmation?.rawValue),
                confirmation_evidence = \(answered.confirmationEvidence), confirmed_at = \(answered.confirmedAt),
                confirmation_due_at = CASE WHEN \(answered.confirmation == .pending) THEN confirmation_due_at END,
                reason_code = \(answered.reasonCode), reason = \(answered.reason),
                updated_at = clock_timestamp()
            WHERE id = \(id) AND state = 'delivered' AND confirmation = 'pending'
            RETURNING \(unescaped: Self.columns)
            """).isEmpty
    }

    public func requeueExpiredLeases() async throws -> [Submission] {
        try await fetch("""
            WITH expired AS (
                UPDATE submission SET state = 'queued', next_attempt_at = clock_timestamp(), owner = NULL,
                    lease_token = NULL, lease_until = NULL, updated_at = clock_timestamp()
                WHERE id IN (SELECT id FROM submission WHERE state = 'running' AND lease_until < clock_timestamp()
                             FOR UPDATE SKIP LOCKED)
                RETURNING \(unescaped: Self.columns)
            ), woken AS (SELECT pg_notify('\(unescaped: Self.channel)', '') WHERE EXISTS (SELECT 1 FROM expired))
            SELECT expired.* FROM expired LEFT JOIN woken ON true
            """)
    }

    public func rescue(_ observed: Submission) async throws -> Submission? {
        guard let id = observed.id, observed.state == .running, let token = observed.leaseToken else { return nil }
        return try await fetch("""
            WITH rescued AS (
                UPDATE submission SET state = 'queued', next_attempt_at = clock_timestamp(), owner = NULL,
                    lease_token = NULL, lease_until = NULL, updated_at = clock_timestamp()
                WHERE id = \(id) AND state = 'running' AND lease_token = \(token)
                RETURNING \(unescaped: Self.columns)
            ), woken AS (SELECT pg_notify('\(unescaped: Self.channel)', '') WHERE EXISTS (SELECT 1 FROM rescued))
            SELECT rescued.* FROM rescued LEFT JOIN woken ON true
            """).first
    }

    public func requeue(_ observed: Submission) async throws -> Submission? {
        guard let id = observed.id, [.dead, .queued].contains(observed.state) else { return nil }
        return try await fetch("""
            WITH requeued AS (
                UPDATE submission SET state = 'queued', attempts = 0, next_attempt_at = clock_timestamp(), owner = NULL,
                    updated_at = clock_timestamp()
                WHERE id = \(id) AND state = \(observed.state.rawValue) AND purged_at IS NULL
                RETURNING \(unescaped: Self.columns)
            ), woken AS (SELECT pg_notify('\(unescaped: Self.channel)', '') WHERE EXISTS (SELECT 1 FROM requeued))
            SELECT requeued.* FROM requeued LEFT JOIN woken ON true
            """).first
    }

    public func nextAttempt() async throws -> Date? {
        try await run { [self] in
            let result = try await client.query("""
                SELECT LEAST((SELECT MIN(next_attempt_at) FROM submission WHERE state = 'queued'),
                             (SELECT MIN(lease_until) FROM submission WHERE state = 'running'))
                """, logger: logger)
            var next: Date?
            for try await value in result.decode(Date?.self) { next = value }
            return next
        }
    }

    public func waitForWork(upTo timeout: Duration) async {
        listener.startIfNeeded { [configuration, logger, wakeUps] in
            await Self.listen(configuration, logger: logger, wakeUps: wakeUps)
        }
        await wakeUps.wait(upTo: timeout)
    }

    /// One LISTEN connection per process (the pool's connections cannot listen): each notification wakes the
    /// waiting workers. Reconnects after a lost connection (notifications sent meanwhile are lost; the workers'
    /// poll covers them).
    static func listen(_ configuration: PostgresLedgerConfiguration, logger: Logger, wakeUps: WakeUps) async {
        var id = 0
        while !Task.isCancelled {
            id += 1
            do {
                let connection = try await PostgresConnection.connect(configuration: try configuration.connection, id: id,
                                                                      logger: logger)
                do {
                    try await connection.listen(on: channel) { notifications in
                        wakeUps.signal()  // Anything queued while not listening.
                        for try await _ in notifications { wakeUps.signal() }
                    }
                } catch {
                    logger.debug("listen connection lost", metadata: ["code": "ledger.unavailable"])
                }
                try? await connection.close()
            } catch {
                logger.debug("listen connection failed", metadata: ["code": "ledger.unavailable"])
            }
            if Task.isCancelled { return }
            try? await Task.sleep(for: .milliseconds(Int64.random(in: 200...800)))
        }
    }

    // MARK: Reading

    public func submission(_ id: Int64) async throws -> Submission? {
        try await fetch("SELECT \(unescaped: Self.columns) FROM submission WHERE id = \(id)").first
    }

    public func submissions(states: [SubmissionState]?, limit: Int?) async throws -> [Submission] {
        let names = states?.map(\.rawValue)
        let count = limit.map(Int64.init)
        return try await fetch("""
            SELECT \(unescaped: Self.columns) FROM submission
            WHERE (\(names)::text[] IS NULL OR state = ANY(\(names)::text[]))
            ORDER BY id LIMIT \(count)
            """)
    }

    public func counts() async throws -> [SubmissionState: Int] {
        try await run { [self] in
            let result = try await client.query("SELECT state, COUNT(*) FROM submission GROUP BY state", logger: logger)
            var counts: [SubmissionState: Int] = [:]
            for try await (state, n) in result.decode((String, Int64).self) {
                if let state = SubmissionState(rawValue: state) { counts[state] = Int(n) }
            }
            return counts
        }
    }

    public func queueByPostfach() async throws -> [PostfachQueue] {
        try await run { [self] in
            let result = try await client.query("""
                SELECT postfach, state, COUNT(*), MIN(next_attempt_at) FROM submission
                WHERE state IN ('queued', 'running') AND postfach IS NOT NULL GROUP BY postfach, state
                """, logger: logger)
            var queues: [String: PostfachQueue] = [:]
            for try await (postfach, state, n, due) in result.decode((String, String, Int64, Date?).self) {
                var queue = queues[postfach] ?? PostfachQueue(postfach: postfach, queued: 0, running: 0, oldestDue: nil)
                if state == "queued" {
                    queue.queued = Int(n)
                    queue.oldestDue = due
                } else {
                    queue.running = Int(n)
                }
                queues[postfach] = queue
            }
            return queues.values.sorted { $0.postfach < $1.postfach }
        }
    }

    public func newestID() async throws -> Int64 {
        try await run { [self] in
            let result = try await client.query("SELECT COALESCE(MAX(id), 0) FROM submission", logger: logger)
            var newest: Int64 = 0
            for try await value in result.decode(Int64.self) { newest = value }
            return newest
        }
    }

    // MARK: Retention

    public func unpurged(state: SubmissionState, finishedBefore date: Date) async throws -> [Submission] {
        guard state.isFinal else { return [] }
        return try await fetch("""
            SELECT \(unescaped: Self.columns) FROM submission
            WHERE state = \(state.rawValue) AND purged_at IS NULL AND updated_at < \(date) ORDER BY id
            """)
    }

    public func markPurged(_ observed: Submission, cutoff: Date, at date: Date) async throws -> Submission? {
        guard let id = observed.id, observed.state.isFinal else { return nil }
        return try await fetch("""
            UPDATE submission SET purged_at = \(date)
            WHERE id = \(id) AND state = \(observed.state.rawValue) AND purged_at IS NULL AND updated_at < \(cutoff)
            RETURNING \(unescaped: Self.columns)
            """).first
    }

    public func purgedWithPayload() async throws -> [Submission] {
        try await fetch("""
            SELECT \(unescaped: Self.columns) FROM submission WHERE purged_at IS NOT NULL AND payload_location IS NOT NULL
            """)
    }

    public func forgetPayloadLocation(_ row: Submission) async throws {
        guard let id = row.id else { return }
        _ = try await fetch("""
            UPDATE submission SET payload_location = NULL WHERE id = \(id) AND purged_at IS NOT NULL
            RETURNING \(unescaped: Self.columns)
            """)
    }
}

/// The ledger as its batcher sees it (no retain cycle).
final class WeakLedger: @unchecked Sendable {
    // Safety: written once in the ledger's initialiser, before the batcher can run.
    weak var ledger: PostgresLedger?
}

/// The LISTEN task of one ledger, started by the first wait.
final class ListenerState: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var task: Task<Void, Never>?
    private var stopped = false

    func startIfNeeded(_ body: @escaping @Sendable () async -> Void) {
        lock.lock(); defer { lock.unlock() }
        guard task == nil, !stopped else { return }
        task = Task { await body() }
    }

    func stop() {
        lock.lock(); defer { lock.unlock() }
        stopped = true
        task?.cancel()
    }
}
