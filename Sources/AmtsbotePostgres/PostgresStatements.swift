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
