import AmtsbotePipeline
import Foundation
import Logging
import PostgresNIO

/// The ledger's tables on PostgreSQL and their versioned migrations. Every process migrates at start; an advisory
/// lock held for the migrating transaction only lets one process at a time do it (the lock goes with the
/// transaction, so a crash or a database restart cannot leave it held).
enum PostgresSchema {
    /// Applied in order, each once, each in the migrating transaction.
    static let migrations: [(version: String, sql: [String])] = [
        ("v1-ledger", [
            """
            CREATE TABLE submission (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                source text NOT NULL,
                received_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                state text NOT NULL,
                payload_location text,
                payload_sha256 text,
                payload_size bigint,
                message_id text,
                delivery_id text,
                schema_id text,
                routing_keys text,
                postfach text,
                routing text,
                reason_code text,
                reason text,
                attempts integer NOT NULL DEFAULT 0,
                next_attempt_at timestamptz,
                receipt text,
                duplicate_of bigint,
                owner text,
                lease_token text,
                lease_until timestamptz,
                purged_at timestamptz
            ) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02)
            """,
            // Due work and running leases only: finished rows stay out of the indexes the claims read.
            "CREATE INDEX submission_due ON submission (next_attempt_at, id) WHERE state = 'queued'",
            "CREATE INDEX submission_running ON submission (lease_until) WHERE state = 'running'",
            "CREATE INDEX submission_unfinished ON submission (state) WHERE state IN ('received', 'validated')",
            "CREATE INDEX submission_retention ON submission (state, updated_at) WHERE purged_at IS NULL",
            // The idempotency claim: one row owns a delivery id, enforced by the primary key.
            """
            CREATE TABLE delivery_claim (
                delivery_id text PRIMARY KEY,
                submission_id bigint NOT NULL
            )
            """,
            // Payloads in chunks, so no worker needs a shared file system and none holds a whole payload.
            """
            CREATE TABLE payload_chunk (
                submission_id bigint NOT NULL,
                seq integer NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (submission_id, seq)
            )
            """,
            "ALTER TABLE payload_chunk ALTER COLUMN data SET STORAGE EXTERNAL",
        ]),
        ("v2-service", [
            // Who sent a submission through the service, the portal's metadata, what validation found.
            "ALTER TABLE submission ADD COLUMN client text, ADD COLUMN portal_metadata text, ADD COLUMN findings text",
            // Idempotency-Key of the service: one row per client and key, reserved while the first request runs.
            """
            CREATE TABLE idempotency_key (
                client text NOT NULL,
                key text NOT NULL,
                reserved_until timestamptz,
                request_sha256 text,
                submission_id bigint,
                response_status integer,
                response_body text,
                created_at timestamptz NOT NULL,
                PRIMARY KEY (client, key)
            )
            """,
        ]),
        ("v3-external-reference", [
            // What a backend recorded before an irreversible step (a server-assigned id), to resume from.
            "ALTER TABLE submission ADD COLUMN external_reference text",
        ]),
        ("v4-confirmation", [
            // The receiver's answer after delivery (FIT-Connect's accept or reject), and when to ask next.
            """
            ALTER TABLE submission ADD COLUMN confirmation text, ADD COLUMN confirmation_evidence text,
                ADD COLUMN confirmation_due_at timestamptz, ADD COLUMN confirmed_at timestamptz
            """,
            "CREATE INDEX submission_confirmation_due ON submission (confirmation_due_at, id) WHERE confirmation = 'pending'",
        ]),
    ]

    static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext('amtsbote.ledger.migrate'))", logger: logger)
            try await connection.query("""
                CREATE TABLE IF NOT EXISTS amtsbote_migration (
                    version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
            var applied: Set<String> = []
            for try await version in try await connection.query("SELECT version FROM amtsbote_migration",
                                                                logger: logger).decode(String.self) {
                applied.insert(version)
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.sql {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query("INSERT INTO amtsbote_migration (version) VALUES (\(migration.version))",
                                           logger: logger)
                logger.info("ledger migrated", metadata: ["version": "\(migration.version)"])
            }
        }
    }
}
