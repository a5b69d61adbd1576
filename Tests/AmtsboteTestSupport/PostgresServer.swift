import Foundation

/// The throwaway PostgreSQL cluster `scripts/test` starts on 127.0.0.1 (`scripts/postgres`): its URL without
/// password in `AMTSBOTE_TEST_POSTGRES_URL` and the password in the file `AMTSBOTE_TEST_POSTGRES_PASSWORD_FILE`.
/// Without them the PostgreSQL tests are skipped with ``unavailableReason`` (and fail under CI).
public enum PostgresServer {
    /// `postgres://USER@127.0.0.1:PORT/postgres`.
    public static var url: String? {
        ProcessInfo.processInfo.environment["AMTSBOTE_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The password's file.
    public static var passwordFile: String? {
        ProcessInfo.processInfo.environment["AMTSBOTE_TEST_POSTGRES_PASSWORD_FILE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public static var password: String? {
        passwordFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?.trimmingCharacters(in: .newlines)
    }

    public static var available: Bool { url != nil && password != nil }

    public static let unavailableReason = """
        no PostgreSQL server for the tests (AMTSBOTE_TEST_POSTGRES_URL and AMTSBOTE_TEST_POSTGRES_PASSWORD_FILE, \
        set by scripts/test after `scripts/postgres start`): the PostgreSQL ledger tests are skipped
        """
}
