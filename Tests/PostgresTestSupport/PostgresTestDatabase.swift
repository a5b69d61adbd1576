import AmtsbotePipeline
import AmtsbotePostgres
import AmtsboteTestSupport
import Foundation
import Logging
import Postfach
import PostgresNIO
import Testing

/// A fresh database on the test cluster for one test, dropped by ``drop()``.
public struct PostgresTestDatabase: Sendable {
    public let name: String
    public let configuration: PostgresLedgerConfiguration

    public static var enabled: Bool { TestEnvironment.canRun(PostgresServer.available) }

    /// Creates `amtsbote_test_<random>` and returns its configuration.
    public static func create() async throws -> PostgresTestDatabase {
        let url = try #require(PostgresServer.url, "\(PostgresServer.unavailableReason)")
        var server = try PostgresLedgerConfiguration(url: url + "?sslmode=disable", password: PostgresServer.password)
        server.maximumConnections = 4
        let name = "amtsbote_test_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16))"
        try await admin(server) { connection, logger in
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        return PostgresTestDatabase(name: name, configuration: server.database(name))
    }

    /// Drops the database (closing what still uses it).
    public func drop() async {
        let name = self.name
        try? await Self.admin(configuration.database("postgres")) { connection, logger in
            try await connection.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
        }
    }

    /// Runs `body` on one connection to the server's `postgres` database.
    public static func admin(_ server: PostgresLedgerConfiguration,
                      _ body: (PostgresConnection, Logger) async throws -> Void) async throws {
        let logger = Logger(label: "amtsbote.test.postgres")
        var configuration = PostgresConnection.Configuration(host: server.host, port: server.port, username: server.user,
                                                             password: server.password, database: "postgres", tls: .disable)
        configuration.options.connectTimeout = .seconds(30)
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            try await body(connection, logger)
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    /// Opens the ledger as `identity`.
    public func open(as identity: ProcessIdentity = .current) async throws -> PostgresLedger {
        try await PostgresLedger.open(configuration, identity: identity)
    }
}
