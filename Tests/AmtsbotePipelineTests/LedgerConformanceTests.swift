import AmtsbotePipeline
import AmtsbotePostgres
import AmtsboteTestSupport
import PostgresTestSupport
import Foundation
import LedgerTesting
import Testing

@Suite("Ledger engines pass the shared conformance suite")
struct LedgerConformanceTests {
    @Test("SQLite (the embedded default)")
    func sqlite() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await LedgerConformance.check {
            let path = directory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
            return { identity in try SQLiteLedger(path: path, identity: identity) }
        }
        try await LedgerConformance.checkPayloads(FilesystemPayloadStore(), workspace: directory, submission: 1)
        let ledger = try SQLiteLedger(path: directory.appendingPathComponent("payloads.sqlite").path)
        let scratch = directory.appendingPathComponent("scratch")
        try await LedgerConformance.checkPayloads(SQLitePayloadStore(ledger: ledger, scratch: scratch),
                                                  workspace: directory, submission: 11)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []
        #expect(left.isEmpty, "temporary copies are removed: \(left)")
    }

    @Test("PostgreSQL (shared by processes on many machines)",
          .enabled(if: PostgresTestDatabase.enabled, Comment(rawValue: PostgresServer.unavailableReason)))
    func postgres() async throws {
        let databases = DatabaseList()
        defer { Task { for database in databases.all { await database.drop() } } }
        try await LedgerConformance.check {
            let database = try await PostgresTestDatabase.create()
            databases.add(database)
            return { identity in try await database.open(as: identity) }
        }
        let database = try await PostgresTestDatabase.create()
        databases.add(database)
        let ledger = try await database.open()
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try PostgresPayloadStore(ledger: ledger, scratch: directory.appendingPathComponent("scratch"))
        try await LedgerConformance.checkPayloads(store, workspace: directory, submission: 1)
        let left = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("scratch").path)
        #expect(left.isEmpty, "temporary copies are removed: \(left)")
        await ledger.close()
    }

    @Test("PostgreSQL: several processes migrating at once leave one schema; a server that cannot be reached is ledger.unavailable",
          .enabled(if: PostgresTestDatabase.enabled, Comment(rawValue: PostgresServer.unavailableReason)))
    func migrationsAndOutage() async throws {
        let database = try await PostgresTestDatabase.create()
        let ledgers = try await withThrowingTaskGroup(of: PostgresLedger.self) { group in
            for _ in 0..<6 { group.addTask { try await database.open() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(ledgers.count == 6)
        _ = try await ledgers[0].recordReceived(source: "after-migration", at: Date())
        #expect(try await ledgers[5].counts() == [.received: 1])
        for ledger in ledgers { await ledger.close() }

        var closed = database.configuration
        closed.port = 9  // Nothing listens there.
        do {
            _ = try await PostgresLedger.open(closed)
            Issue.record("opening a ledger on a closed port must fail")
        } catch let error as LedgerError {
            #expect(error.code == "ledger.unavailable")
            #expect(error.message.contains("postgres://"), "\(error.message)")
            #expect(!error.message.contains(PostgresServer.password ?? "\u{0}"), "never the password")
        }
        await database.drop()
    }
}

/// Databases a test created, for dropping afterwards.
final class DatabaseList: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var databases: [PostgresTestDatabase] = []
    func add(_ database: PostgresTestDatabase) { lock.lock(); databases.append(database); lock.unlock() }
    var all: [PostgresTestDatabase] { lock.lock(); defer { lock.unlock() }; return databases }
}
