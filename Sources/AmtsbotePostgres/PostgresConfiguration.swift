import AmtsbotePipeline
import Foundation
import PostgresNIO

/// Where the shared ledger lives and how to reach it: a `postgres://USER@HOST:PORT/DATABASE` URL and the password
/// from a file or an environment variable (never from the configuration file itself).
public struct PostgresLedgerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    /// `disable`, `prefer` (default) or `require`, from the URL's `sslmode`.
    public var tlsMode: String
    /// Connections this process keeps at most.
    public var maximumConnections: Int
    /// `statement_timeout` of every session: a statement that runs longer is cancelled (a lock wait included).
    public var statementTimeout: Duration
    /// `idle_in_transaction_session_timeout`: a session that sits in an open transaction longer is closed by the
    /// server (a stuck process never pins locks and the vacuum horizon).
    public var idleInTransactionTimeout: Duration
    /// Under load, outcomes of attempts are written together at most this often (a lone outcome after a quiet
    /// spell is written at once): fewer statements and commits per delivery, each outcome recorded a few
    /// milliseconds later. Zero writes a batch as soon as the one before has ended.
    public var outcomeBatchInterval: Duration = .milliseconds(5)

    /// Parses `url`; a password in it is taken only when `allowPasswordInURL` (an environment variable), never from
    /// a configuration file.
    public init(url: String, password: String? = nil, allowPasswordInURL: Bool = false) throws {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? ""),
              let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty else {
            throw LedgerError(code: "ledger.configuration",
                              message: "the PostgreSQL URL must look like postgres://USER@HOST:PORT/DATABASE")
        }
        if components.password != nil && !allowPasswordInURL {
            throw LedgerError(code: "ledger.configuration",
                              message: "the PostgreSQL URL carries a password: use passwordFile or passwordEnv instead")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        self.password = password ?? components.password?.removingPercentEncoding
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? self.user : path
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { $1 })
        tlsMode = query["sslmode"] ?? "prefer"
        guard ["disable", "prefer", "require"].contains(tlsMode) else {
            throw LedgerError(code: "ledger.configuration", message: "sslmode must be disable, prefer or require")
        }
        maximumConnections = Int(query["pool"] ?? "") ?? 8
        statementTimeout = .seconds(30)
        idleInTransactionTimeout = .seconds(60)
    }

    /// The URL without password, for messages.
    public var displayURL: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    /// The same server, another database (tests create one per case).
    public func database(_ name: String) -> PostgresLedgerConfiguration {
        var copy = self
        copy.database = name
        return copy
    }

    var client: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch tlsMode {
        case "disable": tls = .disable
        case "require": tls = .require(.makeClientConfiguration())
        default: tls = .prefer(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(host: host, port: port, username: user, password: password,
                                                         database: database, tls: tls)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(10)
        configuration.options.additionalStartupParameters = sessionSettings
        return configuration
    }

    var connection: PostgresConnection.Configuration {
        get throws {
        let tls: PostgresConnection.Configuration.TLS
        switch tlsMode {
        case "disable": tls = .disable
        case "require": tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        default: tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        var configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password,
                                                             database: database, tls: tls)
        configuration.options.additionalStartupParameters = sessionSettings
        return configuration
        }
    }

    private var sessionSettings: [(String, String)] {
        [("statement_timeout", "\(Int(statementTimeout.components.seconds * 1000))"),
         ("idle_in_transaction_session_timeout", "\(Int(idleInTransactionTimeout.components.seconds * 1000))"),
         ("application_name", "amtsbote"),
         // The queue's prepared statements (PostgresStatements.swift) are planned once per connection. Left to
         // itself the server plans a claim anew at every call (its generic plan, the same index scan, is estimated
         // dearer because LIMIT is a parameter), and that planning cost more than the claim. It also applies to
         // the ledger's other (unnamed, planned once per call) queries, which select by key or by an indexed
         // column; the listing of `deliveries`, which reads the table whole anyway, loses nothing that matters.
         ("plan_cache_mode", "force_generic_plan")]
    }
}

extension Duration {
    /// The duration in (fractional) seconds, as SQL intervals take it.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
