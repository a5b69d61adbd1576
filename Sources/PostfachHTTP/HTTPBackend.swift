import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Postfach

/// Delivers to a Postfach over HTTP: one `PUT` (or `POST`) per delivery to a URL made from a template
/// (`https://host/postfach/{postfach}/{id}`), the payload streamed from its file, with `Idempotency-Key` (the
/// delivery id), `Content-Digest` (SHA-256) and the delivery's metadata.
///
/// How answers map (Docs/backends.md):
/// - 2xx: delivered. With `PUT`, 201 is a new delivery and 200/204 one the receiver already held.
/// - 409 whose `Content-Digest` equals the payload's: already present; otherwise ``PostfachError/Code/conflict``.
/// - 429: ``PostfachError/Code/rateLimited``; 408, 425 and 5xx: ``PostfachError/Code/unavailable``; both retried,
///   honouring `Retry-After`. A connection that fails or breaks: retried.
/// - 401 and 403: ``PostfachError/Code/authenticationFailed``; a redirect (never followed) and every other 4xx:
///   ``PostfachError/Code/rejected``, with the response's problem details (type, title, status, detail) kept.
public final class HTTPBackend: PostfachBackend {
    public let kind = "http"
    public let configuration: Configuration
    let client: HTTPClient

    /// How the backend reaches its receiver.
    public struct Configuration: Sendable {
        /// The URL template; `{postfach}` and `{id}` are replaced (both are URL-safe by construction).
        public var url: String
        /// `PUT` (default) or `POST`.
        public var method: HTTPMethod
        /// The payload's media type.
        public var contentType: String
        /// How long connecting may take.
        public var connectTimeout: Duration
        /// How long one request may take from start to the end of the answer.
        public var requestTimeout: Duration
        /// Credentials sent with every request.
        public var credentials: Credentials
        /// How the metadata travels: one JSON header (`Amtsbote-Metadata`) or one header per field.
        public var metadata: MetadataStyle
        /// Trust roots for the receiver's certificate (PEM file); nil: the system's.
        public var trustRoots: URL?
        /// A client certificate chain and key (PEM files) for receivers that want mutual TLS.
        public var clientCertificate: (chain: URL, key: URL)?

        public init(url: String, method: HTTPMethod = .PUT, contentType: String = "application/xml",
                    connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(60),
                    credentials: Credentials = .none, metadata: MetadataStyle = .jsonHeader, trustRoots: URL? = nil,
                    clientCertificate: (chain: URL, key: URL)? = nil) {
            self.url = url
            self.method = method
            self.contentType = contentType
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.credentials = credentials
            self.metadata = metadata
            self.trustRoots = trustRoots
            self.clientCertificate = clientCertificate
        }
    }

    /// Credentials for the receiver; read from secrets, never from the configuration file.
    public enum Credentials: Sendable {
        case none
        case bearer(token: String)
        case basic(user: String, password: String)
    }

    /// How metadata travels with the payload.
    public enum MetadataStyle: String, Sendable {
        /// `Amtsbote-Metadata: {"schema": …, "routing": …, "portal": …}` (default).
        case jsonHeader = "json-header"
        /// `Amtsbote-Schema`, `Amtsbote-Submission`, `Amtsbote-Leika`, `Amtsbote-Routing`, `Amtsbote-Portal`, …
        case headers
    }

    /// Checks the configuration (URL template, certificate files) and opens a connection pool.
    public init(configuration: Configuration) throws {
        guard configuration.url.contains("{id}"),
              let probe = URL(string: configuration.url.replacingOccurrences(of: "{postfach}", with: "p")
                                .replacingOccurrences(of: "{id}", with: "i")),
              let scheme = probe.scheme?.lowercased(), scheme == "http" || scheme == "https", probe.host != nil else {
            throw PostfachError(code: .rejected, message: "'url' must be an http or https URL containing {id} "
                                + "(and usually {postfach}), e.g. https://host/postfach/{postfach}/{id}")
        }
        if case .none = configuration.credentials {} else if scheme == "http",
           !["127.0.0.1", "::1", "[::1]", "localhost"].contains(probe.host?.lowercased() ?? "") {
            throw PostfachError(code: .rejected, message: "credentials are sent over https only (or to a loopback address)")
        }
        guard configuration.method == .PUT || configuration.method == .POST else {
            throw PostfachError(code: .rejected, message: "'method' must be PUT or POST")
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        do {
            if let roots = configuration.trustRoots {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(roots.path))
            }
            if let (chain, key) = configuration.clientCertificate {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(chain.path).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key.path, format: .pem))
            }
        } catch {
            throw PostfachError(code: .rejected, message: "a certificate or key file of the http backend cannot be read: \(error)")
        }
        var client = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow,
                                              timeout: .init(connect: .nanoseconds(configuration.connectTimeout.clampedNanoseconds),
                                                             read: .nanoseconds(configuration.requestTimeout.clampedNanoseconds)))
        client.decompression = .disabled
        self.configuration = configuration
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    public func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        try checkNames(delivery)
        try Task.checkCancellation()
        switch delivery.payload {
        case .file(let file) where !FileManager.default.isReadableFile(atPath: file.path):
            throw PostfachError(code: .rejected, message: "the payload file cannot be read")
        case .bytes(let bytes) where Int64(bytes.count) != delivery.payloadSize:
            throw PostfachError.wrongSize(Int64(bytes.count), expected: delivery.payloadSize)
        default:
            break
        }
        let url = configuration.url.replacingOccurrences(of: "{postfach}", with: delivery.postfach)
            .replacingOccurrences(of: "{id}", with: delivery.id)
        let digest = ContentDigest.sha256(hex: delivery.payloadSHA256)
        var request = HTTPClientRequest(url: url)
        request.method = configuration.method
        request.headers.add(name: "Idempotency-Key", value: delivery.id)
        request.headers.add(name: "Content-Type", value: configuration.contentType)
        request.headers.add(name: "Content-Digest", value: digest)
        switch configuration.credentials {
        case .none: break
        case .bearer(let token): request.headers.add(name: "Authorization", value: "Bearer \(token)")
        case .basic(let user, let password):
            request.headers.add(name: "Authorization", value: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString())
        }
        for (name, value) in Self.metadataHeaders(delivery, style: configuration.metadata) {
            request.headers.add(name: name, value: value)
        }
        switch delivery.payload {
        case .file(let file): request.body = .stream(FileChunks(url: file), length: .known(delivery.payloadSize))
        case .bytes(let bytes): request.body = .bytes(ByteBuffer(bytes: bytes))
        }

        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, deadline: .now() + .nanoseconds(configuration.requestTimeout.clampedNanoseconds))
        } catch {
            throw Self.failure(error)
        }
        // The status decides; of the body only the start is read (problem details), the rest is not waited for. A
        // body that breaks off changes nothing about a status already received.
        var body = ByteBuffer()
        do {
            for try await var chunk in response.body {
                body.writeBuffer(&chunk)
                if body.readableBytes >= 64 << 10 { break }
            }
        } catch {}
        return try Self.outcome(status: response.status, headers: response.headers, body: body, delivery: delivery,
                                url: url, digest: digest, method: configuration.method)
    }

    /// Maps an answer to a receipt or a ``PostfachError``.
    static func outcome(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer, delivery: Delivery,
                        url: String, digest: String, method: HTTPMethod) throws -> Receipt {
        func receipt(alreadyPresent: Bool) -> Receipt {
            Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: "http",
                    location: resolved(headers.first(name: "Location"), against: url) ?? url, deliveredAt: Date(),
                    payloadSHA256: delivery.payloadSHA256, alreadyPresent: alreadyPresent)
        }
        let code = status.code
        let retryAfter = headers.first(name: "Retry-After").flatMap(parseRetryAfter)
        switch code {
        case 200..<300:
            // PUT: 201 created, 200 or 204 an existing resource (RFC 9110 §9.3.4); any other 2xx counts as new.
            return receipt(alreadyPresent: method == .PUT && (code == 200 || code == 204))
        case 409:
            let held = headers.first(name: "Content-Digest").flatMap(ContentDigest.sha256Member)
            if let held, held == ContentDigest.sha256Member(of: digest) { return receipt(alreadyPresent: true) }
            throw PostfachError(code: .conflict, message: "HTTP 409: the receiver holds another payload under this id"
                                + problemSummary(headers: headers, body: body))
        case 429:
            throw PostfachError(code: .rateLimited, message: "HTTP 429: the receiver asks to slow down"
                                + problemSummary(headers: headers, body: body), retryAfter: retryAfter)
        case 408, 425, 500..<600:
            throw PostfachError(code: .unavailable, message: "HTTP \(code)" + problemSummary(headers: headers, body: body),
                                retryAfter: retryAfter)
        case 401, 403:
            throw PostfachError(code: .authenticationFailed, message: "HTTP \(code): the receiver refuses our credentials"
                                + problemSummary(headers: headers, body: body))
        case 300..<400:
            throw PostfachError(code: .rejected, message: "HTTP \(code): a redirect, not followed (the configured url "
                                + "must name the receiver itself)")
        default:
            throw PostfachError(code: .rejected, message: "HTTP \(code)" + problemSummary(headers: headers, body: body))
        }
    }

    /// A transport failure: cancelled, out of time, or the receiver unreachable (retried).
    static func failure(_ error: any Error) -> PostfachError {
        if let error = error as? PostfachError { return error }
        if error is CancellationError { return PostfachError(code: .cancelled, message: "cancelled") }
        if let error = error as? HTTPClientError {
            if error == .cancelled { return PostfachError(code: .cancelled, message: "cancelled") }
            if error == .deadlineExceeded || error == .readTimeout {
                return PostfachError(code: .timeout, message: "the receiver did not answer in time")
            }
            if error == .connectTimeout { return PostfachError(code: .unavailable, message: "connecting timed out") }
            if error == .bodyLengthMismatch {
                return PostfachError(code: .rejected, message: "the payload file changed while it was sent")
            }
        }
        return PostfachError(code: .unavailable, message: "the receiver cannot be reached: \(error)")
    }

    /// `Retry-After` as seconds or an HTTP date; at most a day.
    static func parseRetryAfter(_ value: String) -> Duration? {
        let text = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int(text), seconds >= 0 { return .seconds(min(seconds, 86_400)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: text) else { return nil }
        return .milliseconds(Int64(max(0, min(date.timeIntervalSinceNow, 86_400)) * 1000))
    }

    /// The problem details of an `application/problem+json` answer (type, title, status, detail), each shortened:
    /// what the receiver said, for the ledger's reason.
    static func problemSummary(headers: HTTPHeaders, body: ByteBuffer) -> String {
        guard headers.first(name: "Content-Type")?.lowercased().hasPrefix("application/problem+json") == true,
              let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else { return "" }
        let parts = ["type", "title", "status", "detail"].compactMap { key in
            object[key].map { "\(key): \(String(describing: $0).prefix(300))" }
        }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: "; ") + ")"
    }

    /// RFC 3986's unreserved characters, ASCII only (`CharacterSet.alphanumerics` would keep letters such as ü).
    static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    static func resolved(_ location: String?, against url: String) -> String? {
        guard let location, !location.isEmpty else { return nil }
        return URL(string: location, relativeTo: URL(string: url))?.absoluteString ?? location
    }

    /// The metadata as headers: one JSON header, or one per field (values that are not plain ASCII text travel
    /// percent-encoded).
    static func metadataHeaders(_ delivery: Delivery, style: MetadataStyle) -> [(String, String)] {
        var fields = delivery.metadata.fields
        fields["receivedAt"] = InternetDateTime.string(from: delivery.receivedAt)
        switch style {
        case .jsonHeader:
            guard let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes]),
                  let text = String(data: data, encoding: .utf8) else { return [] }
            // JSON with non-ASCII escaped (UTF-16, so beyond U+FFFF as a surrogate pair): a header carries ASCII only.
            let escaped = text.unicodeScalars.map { scalar in
                scalar.isASCII ? String(scalar) : scalar.utf16.map { String(format: "\\u%04x", $0) }.joined()
            }.joined()
            return [("Amtsbote-Metadata", escaped)]
        case .headers:
            return fields.sorted { $0.key < $1.key }.map { key, value in
                let name = "Amtsbote-" + key.prefix(1).uppercased() + key.dropFirst()
                let safe = value.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
                return (name, safe ? value : value.addingPercentEncoding(withAllowedCharacters: Self.unreserved) ?? "")
            }
        }
    }
}

extension HTTPBackend {
    /// Registers kind `http` (Docs/backends.md): parameters `url`, `method`, `contentType`, `connectTimeoutSeconds`,
    /// `requestTimeoutSeconds`, `metadata` (`json-header` or `headers`), `trustRoots`, `clientCertificate` and
    /// `clientKey` (PEM files), and the secrets `token` (bearer) or `user` + `password` (basic), each given as
    /// `…Env` or `…File`.
    public static func register(in registry: inout PostfachBackendRegistry) {
        let parameters: Set<String> = ["url", "method", "contentType", "connectTimeoutSeconds", "requestTimeoutSeconds",
                                       "metadata", "trustRoots", "clientCertificate", "clientKey",
                                       "token", "tokenEnv", "tokenFile", "user", "userEnv", "userFile",
                                       "password", "passwordEnv", "passwordFile"]
        registry.register(kind: "http", parameters: parameters) { settings in
            try HTTPBackend(configuration: configuration(from: settings))
        }
    }

    /// The configuration a registry entry describes.
    static func configuration(from settings: BackendSettings) throws -> Configuration {
        let p = settings.parameters
        guard let url = p["url"] else { throw PostfachError(code: .rejected, message: "an http backend needs the parameter 'url'") }
        var configuration = Configuration(url: url)
        if let method = p["method"] {
            switch method.uppercased() {
            case "PUT": configuration.method = .PUT
            case "POST": configuration.method = .POST
            default: throw PostfachError(code: .rejected, message: "'method' must be PUT or POST, not '\(method)'")
            }
        }
        if let type = p["contentType"] { configuration.contentType = type }
        func seconds(_ key: String) throws -> Duration? {
            guard let text = p[key] else { return nil }
            guard let value = Double(text), value > 0, value <= 86_400 else {
                throw PostfachError(code: .rejected, message: "'\(key)' must be a positive number of seconds, not '\(text)'")
            }
            return .milliseconds(Int64(value * 1000))
        }
        if let value = try seconds("connectTimeoutSeconds") { configuration.connectTimeout = value }
        if let value = try seconds("requestTimeoutSeconds") { configuration.requestTimeout = value }
        if let style = p["metadata"] {
            guard let parsed = MetadataStyle(rawValue: style) else {
                throw PostfachError(code: .rejected, message: "'metadata' must be json-header or headers, not '\(style)'")
            }
            configuration.metadata = parsed
        }
        configuration.trustRoots = p["trustRoots"].map(settings.path)
        switch (p["clientCertificate"], p["clientKey"]) {
        case (nil, nil): break
        case (let chain?, let key?): configuration.clientCertificate = (settings.path(chain), settings.path(key))
        default: throw PostfachError(code: .rejected, message: "'clientCertificate' and 'clientKey' go together")
        }
        let token = try settings.secret("token")
        let user = try settings.secret("user")
        let password = try settings.secret("password")
        switch (token, user, password) {
        case (nil, nil, nil): break
        case (let token?, nil, nil): configuration.credentials = .bearer(token: token)
        case (nil, let user?, let password?): configuration.credentials = .basic(user: user, password: password)
        default:
            throw PostfachError(code: .rejected, message: "give either a token (bearer) or a user and a password (basic)")
        }
        return configuration
    }
}

/// A file's bytes as a sequence of buffers of at most 64 KiB, read as the request body is sent: the payload is
/// never in memory whole.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let url: URL

    struct AsyncIterator: AsyncIteratorProtocol {
        let handle: FileHandle?
        var done = false

        mutating func next() async throws -> ByteBuffer? {
            guard !done else { return nil }
            try Task.checkCancellation()
            guard let handle else { throw PostfachError(code: .rejected, message: "the payload file cannot be read") }
            let data = try handle.read(upToCount: 64 << 10) ?? Data()
            if data.isEmpty {
                done = true
                try? handle.close()
                return nil
            }
            return ByteBuffer(bytes: data)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: try? FileHandle(forReadingFrom: url)) }
}
