import AmtsbotePipeline
import AmtsbotePostgres
import Foundation
import Logging

/// The configured ledger: a SQLite file (a path, the embedded default) or a PostgreSQL database shared by every
/// process, `{"postgres": {"url": "postgres://USER@HOST:PORT/DATABASE", "passwordFile": …}}` (or `passwordEnv`).
/// The password never comes from the configuration file itself.
enum LedgerSetting: Codable {
    case sqlite(path: String)
    case postgres(Postgres)

    struct Postgres: Codable {
        var url: String
        var passwordFile: String?
        var passwordEnv: String?
        /// Connections per process (default 8).
        var poolSize: Int?
        var statementTimeoutSeconds: Double?
    }

    private enum Keys: String, CodingKey { case sqlite, postgres }

    init(from decoder: any Decoder) throws {
        if let path = try? decoder.singleValueContainer().decode(String.self) {
            self = .sqlite(path: path)
            return
        }
        let container = try decoder.container(keyedBy: Keys.self)
        if let path = try container.decodeIfPresent(String.self, forKey: .sqlite) {
            self = .sqlite(path: path)
        } else {
            self = .postgres(try container.decode(Postgres.self, forKey: .postgres))
        }
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .sqlite(let path):
            var container = encoder.singleValueContainer()
            try container.encode(path)
        case .postgres(let postgres):
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(postgres, forKey: .postgres)
        }
    }

    static let knownPostgresKeys: Set<String> = ["url", "passwordFile", "passwordEnv", "poolSize", "statementTimeoutSeconds"]

    /// `AMTSBOTE_LEDGER_URL` overrides the configured ledger for every command: `postgres://USER[:PASSWORD]@HOST:PORT/DB`
    /// (the password may also come from `AMTSBOTE_LEDGER_PASSWORD_FILE`), or a SQLite path (`sqlite:PATH` or a plain path).
    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> LedgerSetting? {
        guard let url = environment["AMTSBOTE_LEDGER_URL"], !url.isEmpty else { return nil }
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            return .postgres(Postgres(url: url, passwordFile: environment["AMTSBOTE_LEDGER_PASSWORD_FILE"], passwordEnv: nil,
                                      poolSize: nil, statementTimeoutSeconds: nil))
        }
        if url.contains("://") {
            throw ConfigurationError("AMTSBOTE_LEDGER_URL: expected postgres://USER@HOST:PORT/DATABASE or a SQLite path")
        }
        return .sqlite(path: url.hasPrefix("sqlite:") ? String(url.dropFirst("sqlite:".count)) : url)
    }

    /// The PostgreSQL connection settings, with the password read from its file or variable.
    func postgresConfiguration(fromEnvironment: Bool, resolve: (String) -> URL) throws -> PostgresLedgerConfiguration? {
        guard case .postgres(let settings) = self else { return nil }
        var password: String?
        if let file = settings.passwordFile {
            let path = resolve(file).path
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigurationError("ledger.postgres.passwordFile: cannot read \(path)")
            }
            password = text.trimmingCharacters(in: .newlines)
        } else if let variable = settings.passwordEnv {
            guard let value = ProcessInfo.processInfo.environment[variable] else {
                throw ConfigurationError("ledger.postgres.passwordEnv: the environment variable \(variable) is not set")
            }
            password = value
        }
        do {
            var configuration = try PostgresLedgerConfiguration(url: settings.url, password: password,
                                                                allowPasswordInURL: fromEnvironment)
            if let pool = settings.poolSize {
                guard pool >= 1 else { throw ConfigurationError("ledger.postgres.poolSize must be at least 1") }
                configuration.maximumConnections = pool
            }
            if let seconds = settings.statementTimeoutSeconds {
                guard seconds > 0 else { throw ConfigurationError("ledger.postgres.statementTimeoutSeconds must be positive") }
                configuration.statementTimeout = .milliseconds(Int64(seconds * 1000))
            }
            return configuration
        } catch let error as LedgerError {
            throw ConfigurationError("ledger.postgres.url: \(error.message)")
        }
    }
}
