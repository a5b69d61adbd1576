import Foundation

/// How `amtsbote serve` listens, whom it admits, and its limits.
public struct IntakeServiceConfiguration: Sendable {
    /// Where the API listens (`127.0.0.1:8080`).
    public var listen: ListenAddress
    /// Where `/metrics` is served besides the API address; nil: on the API address only.
    public var metricsListen: ListenAddress?
    /// The clients, their tokens and client certificates. Empty: no authentication, and the service listens on
    /// loopback only.
    public var clients: [ServiceClient]
    /// HTTPS for the API listener, optionally with client certificates (mTLS); nil: plain HTTP.
    public var tls: ServiceTLS?
    /// The largest body accepted, in bytes: a larger `Content-Length` is refused before the body is read, and a
    /// chunked body is cut as soon as it crosses the limit.
    public var maxBodyBytes: Int64
    /// The most submissions not yet decided or delivered (received, validated, queued, running) before new ones
    /// are turned away with 429.
    public var maxQueueDepth: Int
    /// The most request bodies read at the same time; more wait in the listen backlog's place: 429 at once.
    public var maxConcurrentIntakes: Int
    /// A connection silent this long (headers not finished, a body that stalls, keep-alive between requests) is closed.
    public var idleTimeout: Duration
    /// The largest `Amtsbote-Portal-Metadata` header, in bytes.
    public var maxPortalMetadataBytes: Int
    /// How long a used `Idempotency-Key` is kept (at least 24 hours).
    public var idempotencyKeyRetention: Duration
    /// How long one request's hold on its `Idempotency-Key` lasts without an answer before another request may
    /// take it over (the first request's process died).
    public var idempotencyReservation: Duration
    /// How often the queue depth is read for backpressure and metrics.
    public var depthSampleInterval: Duration
    /// The `Retry-After` (seconds) of a 429.
    public var retryAfterSeconds: Int

    public init(listen: ListenAddress = ListenAddress(host: "127.0.0.1", port: 8080), metricsListen: ListenAddress? = nil,
                clients: [ServiceClient] = [], tls: ServiceTLS? = nil, maxBodyBytes: Int64 = 50 * 1024 * 1024, maxQueueDepth: Int = 10_000,
                maxConcurrentIntakes: Int = 64, idleTimeout: Duration = .seconds(30), maxPortalMetadataBytes: Int = 4096,
                idempotencyKeyRetention: Duration = .seconds(48 * 3600), idempotencyReservation: Duration = .seconds(600),
                depthSampleInterval: Duration = .milliseconds(250), retryAfterSeconds: Int = 2) {
        self.listen = listen
        self.metricsListen = metricsListen
        self.clients = clients
        self.tls = tls
        self.maxBodyBytes = maxBodyBytes
        self.maxQueueDepth = maxQueueDepth
        self.maxConcurrentIntakes = maxConcurrentIntakes
        self.idleTimeout = idleTimeout
        self.maxPortalMetadataBytes = maxPortalMetadataBytes
        self.idempotencyKeyRetention = idempotencyKeyRetention
        self.idempotencyReservation = idempotencyReservation
        self.depthSampleInterval = depthSampleInterval
        self.retryAfterSeconds = retryAfterSeconds
    }

    /// Refuses what cannot run safely: listening beyond loopback without authentication, limits that are not positive.
    public func check() throws {
        if clients.isEmpty, !listen.isLoopback || !(metricsListen?.isLoopback ?? true) {
            throw ServiceConfigurationError(
                "without clients (service.clients) the service listens on loopback only, not on \(listen)")
        }
        if maxBodyBytes <= 0 { throw ServiceConfigurationError("service.maxBodyBytes must be positive") }
        if maxQueueDepth <= 0 { throw ServiceConfigurationError("service.maxQueueDepth must be positive") }
        if maxConcurrentIntakes <= 0 { throw ServiceConfigurationError("service.maxConcurrentIntakes must be positive") }
        if idleTimeout <= .zero { throw ServiceConfigurationError("service.idleTimeoutSeconds must be positive") }
        if idempotencyKeyRetention < .seconds(24 * 3600) {
            throw ServiceConfigurationError("service.idempotencyKeyRetentionHours must be at least 24")
        }
        var names = Set<String>()
        for client in clients where !names.insert(client.name).inserted {
            throw ServiceConfigurationError("service.clients: '\(client.name)' appears twice")
        }
        if let client = clients.first(where: { !$0.certificateSHA256.isEmpty }), tls?.clientCertificateAuthorities == nil {
            throw ServiceConfigurationError("client '\(client.name)' is known by its certificate, but "
                + "service.tls.clientCertificateAuthorities names no authority to verify client certificates with")
        }
        var fingerprints = Set<[UInt8]>()
        for client in clients {
            for fingerprint in client.certificateSHA256 where !fingerprints.insert(fingerprint).inserted {
                throw ServiceConfigurationError(
                    "service.clients: a certificate fingerprint of '\(client.name)' belongs to another client too")
            }
        }
        if let tls, tls.requireClientCertificate, tls.clientCertificateAuthorities == nil {
            throw ServiceConfigurationError("service.tls.requireClientCertificate needs service.tls.clientCertificateAuthorities")
        }
    }
}

/// HTTPS on the API listener: the server's certificate chain and key, and, for client certificates (mutual TLS),
/// the authorities that issue them. A client certificate is verified against those authorities during the
/// handshake; which client it stands for is decided by its SHA-256 fingerprint (``ServiceClient/certificateSHA256``).
public struct ServiceTLS: Sendable, Hashable {
    /// PEM file: the server's certificate, then any intermediates.
    public var certificateChainFile: String
    /// PEM file: the server's private key.
    public var privateKeyFile: String
    /// PEM file with the certificates of the authorities that issue client certificates; nil: none asked for.
    public var clientCertificateAuthorities: String?
    /// Refuse the handshake of a connection without a valid client certificate (otherwise a bearer token will do).
    public var requireClientCertificate: Bool

    public init(certificateChainFile: String, privateKeyFile: String, clientCertificateAuthorities: String? = nil,
                requireClientCertificate: Bool = false) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.clientCertificateAuthorities = clientCertificateAuthorities
        self.requireClientCertificate = requireClientCertificate
    }
}

/// A host and port to listen on.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` (`[::1]:8080` for IPv6); port 0 picks a free port.
    public init(parsing text: String) throws {
        let bad = ServiceConfigurationError("'\(text)' is not HOST:PORT")
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { throw bad }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw bad }
        self.init(host: host, port: port)
    }

    /// 127.0.0.0/8, ::1 or localhost.
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// One client of the service: its name (recorded with its submissions), how it proves who it is (the SHA-256 of its
/// bearer token, the SHA-256 fingerprints of its client certificates, or both), and what it may submit.
public struct ServiceClient: Sendable, Hashable {
    public var name: String
    /// SHA-256 of the token, 32 bytes; nil: this client has no token. The token itself is never configured.
    public var tokenSHA256: [UInt8]?
    /// SHA-256 of each client certificate (DER) that stands for this client, 32 bytes each; several while a
    /// certificate is being replaced.
    public var certificateSHA256: [[UInt8]]
    /// Schema ids it may submit; nil: any.
    public var schemas: Set<String>?
    /// Postfächer it may submit to; nil: any.
    public var postfaecher: Set<String>?

    /// - Parameters:
    ///   - tokenSHA256: 64 hex digits, optionally prefixed `sha256:`.
    ///   - certificateSHA256: the same form (colons between the bytes allowed, as `openssl x509 -fingerprint`
    ///     prints them), one per certificate.
    public init(name: String, tokenSHA256 hex: String?, certificateSHA256: [String] = [], schemas: Set<String>? = nil,
                postfaecher: Set<String>? = nil) throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw ServiceConfigurationError("client name '\(name)' must be letters, digits, '-', '_' or '.'")
        }
        guard hex != nil || !certificateSHA256.isEmpty else {
            throw ServiceConfigurationError("client '\(name)' needs tokenSHA256, certificateSHA256 or both")
        }
        self.name = name
        self.tokenSHA256 = try hex.map { try Self.digest($0, of: name, key: "tokenSHA256", what: "the token") }
        self.certificateSHA256 = try certificateSHA256.map {
            try Self.digest($0.replacingOccurrences(of: ":", with: ""), of: name, key: "certificateSHA256",
                            what: "the certificate in DER")
        }
        self.schemas = schemas
        self.postfaecher = postfaecher
    }

    private static func digest(_ text: String, of name: String, key: String, what: String) throws -> [UInt8] {
        let digits = text.lowercased().hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
        guard digits.count == 64, let bytes = bytes(fromHex: digits) else {
            throw ServiceConfigurationError("client '\(name)': \(key) must be 64 hex digits (sha256 of \(what))")
        }
        return bytes
    }

    static func bytes(fromHex hex: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        var iterator = hex.makeIterator()
        while let high = iterator.next() {
            guard let low = iterator.next(), let h = high.hexDigitValue, let l = low.hexDigitValue else { return nil }
            bytes.append(UInt8(h << 4 | l))
        }
        return bytes
    }
}

/// The service configuration cannot run.
public struct ServiceConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
