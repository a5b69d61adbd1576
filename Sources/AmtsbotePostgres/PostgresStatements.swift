import AmtsbotePipeline
import Foundation
import PostgresNIO

// The queue's hot statements, prepared once per connection: a claim or a batch of outcomes then costs the server
// no parse and no planning (which took longer than the statement itself), and the pool keeps the statements
// across calls. Everything that varies is a bound parameter.

/// Claims up to `limit` due rows: `running`, one more attempt, a fresh lease token and end, the claiming process.
struct ClaimDueStatement: PostgresPreparedStatement {
    static let name = "amtsbote_claim_due_v3"
    // The due rows are locked in a sub-select evaluated once, before the update (the MATERIALIZED CTE of the usual
    // recipe does the same), and the update reaches them by primary key through `= ANY(ARRAY(…))`. A join with the
    // CTE would let a plan planned once (LIMIT unknown, so a tenth of the table estimated) hash-join against a scan
    // of the whole table: fine with 10,000 rows, seconds per claim with 100,000. `now()` (the statement's own
    // transaction start) rather than `clock_timestamp()`: a stable value bounds the index scan, so rows waiting
    // for a later retry are never walked.
    static let sql = """
        UPDATE submission s SET state = 'running', attempts = s.attempts + 1,
            lease_token = gen_random_uuid()::text,
            lease_until = clock_timestamp() + make_interval(secs => $3),
            owner = $4, updated_at = clock_timestamp()
        WHERE s.id = ANY(ARRAY(
            SELECT id FROM submission
            WHERE state = 'queued' AND next_attempt_at <= COALESCE($1, now())
            ORDER BY next_attempt_at, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED))
        RETURNING \(PostgresLedger.columns(prefixedWith: "s."))
        """
    static let bindingDataTypes: [PostgresDataType] = [.timestamptz, .int8, .float8, .text]
    typealias Row = Submission

    var dueBy: Date?
    var limit: Int64
    var leaseSeconds: Double
    var owner: String

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 4)
        if let dueBy { bindings.append(dueBy) } else { bindings.appendNull() }
        bindings.append(limit)
        bindings.append(leaseSeconds)
        bindings.append(owner)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Submission { try PostgresLedger.submission(row) }
}

/// Records many outcomes, each fenced by its own lease token, and wakes the other workers when a row is due again.
/// Returns the ids that were recorded. Absent optional values travel as U+0001 (an array of text cannot hold a
/// NULL through unnest's binding here), and a negative time as "no next attempt".
struct FinishAttemptsStatement: PostgresPreparedStatement {
    static let name = "amtsbote_finish_attempts_v2"
    static let sql = """
        WITH input AS (
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::float8[], $8::text[], $9::float8[])
                AS i(id, token, state, reason_code, reason, receipt, next_at, confirmation, confirmation_at)
        ), finished AS (
            UPDATE submission s SET state = i.state, reason_code = NULLIF(i.reason_code, E'\\x01'),
                reason = NULLIF(i.reason, E'\\x01'), receipt = NULLIF(i.receipt, E'\\x01'),
                next_attempt_at = CASE WHEN i.next_at < 0 THEN NULL ELSE to_timestamp(i.next_at) END,
                confirmation = NULLIF(i.confirmation, E'\\x01'),
                confirmation_due_at = CASE WHEN i.confirmation_at < 0 THEN NULL ELSE to_timestamp(i.confirmation_at) END,
                owner = NULL, lease_token = NULL, lease_until = NULL, updated_at = clock_timestamp()
            FROM input i
            WHERE s.id = i.id AND s.state = 'running' AND s.lease_token = i.token
            RETURNING s.id, s.state
        ), woken AS (
            SELECT pg_notify('\(PostgresLedger.channel)', '')
            WHERE EXISTS (SELECT 1 FROM finished WHERE state = 'queued')
        )
        SELECT finished.id FROM finished LEFT JOIN woken ON true
        """
    static let bindingDataTypes: [PostgresDataType] = [.int8Array, .textArray, .textArray, .textArray, .textArray,
                                                        .textArray, .float8Array, .textArray, .float8Array]
    typealias Row = Int64

    var outcomes: [Submission]

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 9)
        bindings.append(outcomes.map { $0.id ?? -1 })
        bindings.append(outcomes.map { $0.leaseToken ?? "" })
        bindings.append(outcomes.map(\.state.rawValue))
        bindings.append(outcomes.map { $0.reasonCode ?? "\u{1}" })
        bindings.append(outcomes.map { $0.reason ?? "\u{1}" })
        bindings.append(outcomes.map { $0.receipt ?? "\u{1}" })
        bindings.append(outcomes.map { $0.nextAttemptAt?.timeIntervalSince1970 ?? -1 })
        bindings.append(outcomes.map { $0.confirmation?.rawValue ?? "\u{1}" })
        bindings.append(outcomes.map { $0.confirmationDueAt?.timeIntervalSince1970 ?? -1 })
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Int64 { try row.decode(Int64.self) }
}

/// Extends the leases the caller still holds; returns their ids.
struct ExtendLeasesStatement: PostgresPreparedStatement {
    static let name = "amtsbote_extend_leases_v1"
    static let sql = """
        UPDATE submission s SET lease_until = clock_timestamp() + make_interval(secs => $3)
        FROM unnest($1::bigint[], $2::text[]) AS held(id, token)
        WHERE s.id = held.id AND s.state = 'running' AND s.lease_token = held.token
        RETURNING s.id
        """
    static let bindingDataTypes: [PostgresDataType] = [.int8Array, .textArray, .float8]
    typealias Row = Int64

    var ids: [Int64]
    var tokens: [String]
    var leaseSeconds: Double

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(ids)
        bindings.append(tokens)
        bindings.append(leaseSeconds)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Int64 { try row.decode(Int64.self) }
}

// The intake's statements: a submission through the service is recorded, its payload kept, and its verdict written
// with the claim of its delivery id and the queueing: three statements, each one round trip, prepared once per
// connection (a duplicate or a row taken over is settled by a transaction after the third).

/// Every column of a row that a whole-row write sets, as parameters $1…$29 in this order (not the id, not
/// `received_at`; `updated_at` is the server's clock).
enum RowAssignments {
    /// `source = $1, …, confirmed_at = $29`; `next_attempt_at` and `lease_until` may be given as expressions.
    static func sql(nextAttemptAt: String = "$15", leaseUntil: String = "$20") -> String {
        """
        source = $1, updated_at = clock_timestamp(), state = $2, payload_location = $3, payload_sha256 = $4,
            payload_size = $5, message_id = $6, delivery_id = $7, schema_id = $8, routing_keys = $9, postfach = $10,
            routing = $11, reason_code = $12, reason = $13, attempts = $14, next_attempt_at = \(nextAttemptAt),
            receipt = $16, duplicate_of = $17, owner = $18, lease_token = $19, lease_until = \(leaseUntil),
            purged_at = $21, client = $22, portal_metadata = $23, findings = $24, external_reference = $25,
            confirmation = $26, confirmation_evidence = $27, confirmation_due_at = $28, confirmed_at = $29
        """
    }

    static let types: [PostgresDataType] = [
        .text, .text, .text, .text, .int8, .text, .text, .text, .text, .text,
        .text, .text, .text, .int4, .timestamptz, .text, .int8, .text, .text, .timestamptz,
        .timestamptz, .text, .text, .text, .text, .text, .text, .timestamptz, .timestamptz,
    ]

    static func append(_ s: Submission, to bindings: inout PostgresBindings) {
        bindings.append(s.source)
        bindings.append(s.state.rawValue)
        bindings.append(s.payloadLocation)
        bindings.append(s.payloadSHA256)
        bindings.append(s.payloadSize)
        bindings.append(s.messageId)
        bindings.append(s.deliveryId)
        bindings.append(s.schemaId)
        bindings.append(s.routingKeys)
        bindings.append(s.postfach)
        bindings.append(s.routing)
        bindings.append(s.reasonCode)
        bindings.append(s.reason)
        bindings.append(Int32(s.attempts))
        bindings.append(s.nextAttemptAt)
        bindings.append(s.receipt)
        bindings.append(s.duplicateOf)
        bindings.append(s.owner)
        bindings.append(s.leaseToken)
        bindings.append(s.leaseUntil)
        bindings.append(s.purgedAt)
        bindings.append(s.client)
        bindings.append(s.portalMetadata)
        bindings.append(s.findings)
        bindings.append(s.externalReference)
        bindings.append(s.confirmation?.rawValue)
        bindings.append(s.confirmationEvidence)
        bindings.append(s.confirmationDueAt)
        bindings.append(s.confirmedAt)
    }
}

/// Records a new submission as `received`, owned by this process.
struct RecordReceivedStatement: PostgresPreparedStatement {
    static let name = "amtsbote_record_received_v1"
    static let sql = """
        INSERT INTO submission (source, received_at, updated_at, state, owner, client, portal_metadata)
        VALUES ($1, $2, clock_timestamp(), 'received', $3, $4, $5)
        RETURNING \(PostgresLedger.columns(prefixedWith: ""))
        """
    static let bindingDataTypes: [PostgresDataType] = [.text, .timestamptz, .text, .text, .text]
    typealias Row = Submission

    var source: String
    var receivedAt: Date
    var owner: String
    var origin: IntakeOrigin

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 5)
        bindings.append(source)
        bindings.append(receivedAt)
        bindings.append(owner)
        bindings.append(origin.client)
        bindings.append(origin.portalMetadata)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Submission { try PostgresLedger.submission(row) }
}

/// Writes every column of a row this process owns in the expected state; returns its id when it changed.
struct WriteRowStatement: PostgresPreparedStatement {
    static let name = "amtsbote_write_row_v1"
    static let sql = """
        UPDATE submission SET \(RowAssignments.sql())
        WHERE id = $30 AND state = $31 AND owner = $32
        RETURNING id
        """
    static let bindingDataTypes: [PostgresDataType] = RowAssignments.types + [.int8, .text, .text]
    typealias Row = Int64

    var row: Submission
    var id: Int64
    var expected: SubmissionState
    var owner: String

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 32)
        RowAssignments.append(row, to: &bindings)
        bindings.append(id)
        bindings.append(expected.rawValue)
        bindings.append(owner)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Int64 { try row.decode(Int64.self) }
}

/// The common case of claim-and-queue in one statement: the row is locked while it is still this process's in the
/// expected state ($31), so no other process can take it over between the claim and the write (a plain `EXISTS`
/// would read the statement's snapshot and lock nothing: a takeover committed meanwhile would leave the claim
/// inserted and the row unwritten); then the delivery id is claimed for it and the row written `queued` (due now,
/// with a wake-up for the workers) or `running` under a lease of $34 seconds. Returns the row as stored; no row when the delivery id was claimed before (a duplicate) or the row
/// is no longer this process's, which the caller then settles in a transaction of its own.
struct QueueClaimedStatement: PostgresPreparedStatement {
    static let name = "amtsbote_queue_claimed_v3"
    static let sql = """
        WITH mine AS (
            SELECT id FROM submission WHERE id = $30 AND state = $31 AND owner = $32 FOR UPDATE
        ), claim AS (
            INSERT INTO delivery_claim (delivery_id, submission_id)
            SELECT $33, id FROM mine
            ON CONFLICT (delivery_id) DO NOTHING
            RETURNING submission_id
        ), queued AS (
            UPDATE submission SET \(RowAssignments.sql(
                nextAttemptAt: "CASE WHEN $2 = 'queued' THEN clock_timestamp() ELSE $15 END",
                leaseUntil: "CASE WHEN $2 = 'running' THEN clock_timestamp() + make_interval(secs => $34) END"))
            WHERE id = (SELECT submission_id FROM claim) AND state = $31 AND owner = $32
            RETURNING \(PostgresLedger.columns(prefixedWith: ""))
        ), woken AS (
            SELECT pg_notify('\(PostgresLedger.channel)', '') WHERE EXISTS (SELECT 1 FROM queued WHERE state = 'queued')
        )
        SELECT queued.* FROM queued LEFT JOIN woken ON true
        """
    static let bindingDataTypes: [PostgresDataType] = RowAssignments.types + [.int8, .text, .text, .text, .float8]
    typealias Row = Submission

    var row: Submission
    var id: Int64
    var expected: SubmissionState
    var owner: String
    var deliveryId: String
    var leaseSeconds: Double

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 34)
        RowAssignments.append(row, to: &bindings)
        bindings.append(id)
        bindings.append(expected.rawValue)
        bindings.append(owner)
        bindings.append(deliveryId)
        bindings.append(leaseSeconds)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Submission { try PostgresLedger.submission(row) }
}

/// Keeps a payload of one chunk: chunk 0 written (or replaced, for an intake tried again), any later chunks of an
/// earlier attempt removed.
struct KeepSmallPayloadStatement: PostgresPreparedStatement {
    static let name = "amtsbote_keep_small_payload_v1"
    static let sql = """
        WITH later AS (DELETE FROM payload_chunk WHERE submission_id = $1 AND seq > 0)
        INSERT INTO payload_chunk (submission_id, seq, data) VALUES ($1, 0, $2)
        ON CONFLICT (submission_id, seq) DO UPDATE SET data = excluded.data
        RETURNING submission_id
        """
    static let bindingDataTypes: [PostgresDataType] = [.int8, .bytea]
    typealias Row = Int64

    var submission: Int64
    var data: ByteBuffer

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(submission)
        bindings.append(data)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Int64 { try row.decode(Int64.self) }
}

/// A payload's only chunk when it is at most $2 bytes long; no row for a larger or a chunked payload.
struct ReadSmallPayloadStatement: PostgresPreparedStatement {
    static let name = "amtsbote_read_small_payload_v1"
    static let sql = """
        SELECT data FROM payload_chunk WHERE submission_id = $1 AND seq = 0 AND length(data) <= $2
        AND NOT EXISTS (SELECT 1 FROM payload_chunk WHERE submission_id = $1 AND seq = 1)
        """
    static let bindingDataTypes: [PostgresDataType] = [.int8, .int4]
    typealias Row = ByteBuffer

    var submission: Int64
    var limit: Int32

    func makeBindings() -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 2)
        bindings.append(submission)
        bindings.append(limit)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> ByteBuffer { try row.decode(ByteBuffer.self) }
}
