import AsyncHTTPClient
import Crypto
import CryptoExtras
import Foundation
import JOSE
import NIOCore
import NIOHTTP1
import NIOSSL
import Postfach
import SwiftASN1
import X509

/// Delivers to FIT-Connect (Submission API v1): obtains and caches an OAuth2 token (client credentials), reads the
/// destination (must be active and take our schema as `application/xml`) and its encryption key (RSA, `wrapKey`,
/// at least 4096 bits; its `x5c` chain checked against configured trust roots), creates the submission and
/// **records its ids in the ledger before anything else** (`DeliveryContext.record`), encrypts the XML and the
/// metadata (SHA-512 of the exact bytes, schema, LeiKa service, the portal's authentication and payment
/// information) as compact JWEs, and submits. An attempt that finds a recorded submission resumes it: a crash or
/// a failure between create and submit never makes a second submission. Docs/backends.md.
public final class FITConnectBackend: PostfachBackend {
    public let kind = "fit-connect"
    public let configuration: Configuration
    let client: HTTPClient
    let tokens = TokenCache()

    public struct Configuration: Sendable {
        /// The OAuth2 token endpoint.
        public var tokenURL: String
        /// The Submission API's base URL (without `/v1`).
        public var apiURL: String
        public var clientID: String
        public var clientSecret: String
        /// Narrows the token's scope; nil: all the client's scopes.
        public var scope: String?
        /// The destination of each Postfach.
        public var destinations: [String: String]
        /// The destination of every other Postfach; nil: a Postfach without a destination is refused.
        public var defaultDestination: String?
        /// The submission schema URI; `{schema}` is replaced by the schema id the payload was validated against.
        public var schemaURI: String
        /// The service's name in `serviceType` (the LeiKa key from routing names the service itself).
        public var serviceName: String
        /// Authorities the destinations' key certificates (`x5c`) must chain to; empty: not checked.
        public var trustRoots: [Certificate]
        public var connectTimeout: Duration
        public var requestTimeout: Duration
        /// Called between create and submit (tests: a crash at the worst moment).
        public var afterCreate: (@Sendable (_ submissionID: String) async throws -> Void)?

        public init(tokenURL: String, apiURL: String, clientID: String, clientSecret: String, scope: String? = nil,
                    destinations: [String: String] = [:], defaultDestination: String? = nil,
                    schemaURI: String = "urn:amtsbote:schema:{schema}", serviceName: String = "Antrag",
                    trustRoots: [Certificate] = [], connectTimeout: Duration = .seconds(10),
                    requestTimeout: Duration = .seconds(60)) {
            self.tokenURL = tokenURL
            self.apiURL = apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL
            self.clientID = clientID
            self.clientSecret = clientSecret
            self.scope = scope
            self.destinations = destinations
            self.defaultDestination = defaultDestination
            self.schemaURI = schemaURI
            self.serviceName = serviceName
            self.trustRoots = trustRoots
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
        }
    }

    /// What the ledger keeps of a FIT-Connect delivery: the ids the server assigned, and the authentication tags of
    /// every encryption an attempt sent to the submit (the receiver's accept must name one of them: each holds our
    /// exact bytes, and nothing else does).
    struct Reference: Codable {
        var destinationId: String
        var submissionId: String
        var caseId: String
        var sentTags: [AuthenticationTags]?

        /// Whether `tags` name content this sender encrypted for this submission.
        func sent(_ tags: AuthenticationTags) -> Bool { (sentTags ?? []).contains { $0.names(sameAs: tags) } }
    }

    public init(configuration: Configuration) throws {
        for url in [configuration.tokenURL, configuration.apiURL] {
            guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), parsed.host != nil,
                  scheme == "https" || (scheme == "http" && ["127.0.0.1", "::1", "localhost"].contains(parsed.host ?? "")) else {
                throw PostfachError(code: .rejected, message: "'\(url)' must be an https URL (http only for a loopback stand-in)")
            }
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        let timeout = HTTPClient.Configuration.Timeout(connect: .nanoseconds(configuration.connectTimeout.clampedNanoseconds),
                                                       read: .nanoseconds(configuration.requestTimeout.clampedNanoseconds))
        self.configuration = configuration
        client = HTTPClient(eventLoopGroupProvider: .singleton,
                            configuration: .init(tlsConfiguration: tls, redirectConfiguration: .disallow, timeout: timeout))
    }

    public func shutdown() async { try? await client.shutdown() }

    public func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        try checkNames(delivery)
        try Task.checkCancellation()
        guard let destinationID = configuration.destinations[delivery.postfach] ?? configuration.defaultDestination else {
            throw PostfachError(code: .rejected, message: "no FIT-Connect destination is configured for this Postfach")
        }
        guard delivery.payloadSize <= 64 << 20 else {
            throw PostfachError(code: .rejected, message: "the payload is larger than 64 MiB, more than a FIT-Connect submission takes")
        }
        let schemaURI = configuration.schemaURI.replacingOccurrences(of: "{schema}", with: delivery.metadata.schemaId ?? "")
        var context = context
        let destination = try await object("GET", "/v1/destinations/\(destinationID)")
        try Self.check(destination: destination, schemaURI: schemaURI)
        let key = try await encryptionKey(destinationID: destinationID, kid: destination["encryptionKid"] as? String ?? "")

        var reference: Reference
        if let recorded = context.reference, let known = try? JSONDecoder().decode(Reference.self, from: Data(recorded.utf8)),
           known.destinationId == destinationID {
            reference = known
        } else {
            var serviceType: [String: Any] = ["name": configuration.serviceName]
            if let leika = delivery.metadata.leikaKey { serviceType["identifier"] = "urn:de:fim:leika:leistung:\(leika)" }
            let created = try await object("POST", "/v1/submissions", json: [
                "destinationId": destinationID, "announcedAttachments": [String](), "serviceType": serviceType])
            guard let submissionID = created["submissionId"] as? String, let caseID = created["caseId"] as? String else {
                throw PostfachError(code: .unavailable, message: "FIT-Connect created a submission without submissionId or caseId")
            }
            reference = Reference(destinationId: destinationID, submissionId: submissionID, caseId: caseID)
            // Recorded before anything else happens to it: a later attempt resumes this submission.
            try await context.record(try Self.encoded(reference))
        }
        try await configuration.afterCreate?(reference.submissionId)

        let data = try delivery.payloadContents()
        let metadata = try Self.metadata(for: data, schemaURI: schemaURI, delivery: delivery)
        let encryptedData = try JWE.encrypt(data, for: key.encryptionKey, keyID: key.kid, contentType: "application/xml")
        let encryptedMetadata = try JWE.encrypt(metadata, for: key.encryptionKey, keyID: key.kid, contentType: "application/json")
        // What the receiver's accept may name, recorded before the submit that sends it (each attempt's own
        // encryption; the last 50 are kept).
        let tags = AuthenticationTags(metadata: try JWE.parts(of: encryptedMetadata).authenticationTag,
                                      data: try JWE.parts(of: encryptedData).authenticationTag)
        reference.sentTags = Array(((reference.sentTags ?? []) + [tags]).suffix(50))
        try await context.record(try Self.encoded(reference))
        do {
            _ = try await object("PUT", "/v1/submissions/\(reference.submissionId)",
                                 json: ["encryptedMetadata": encryptedMetadata, "encryptedData": encryptedData])
        } catch let error as PostfachError where error.code == .rejected && error.message.contains("HTTP 422") {
            // An earlier attempt submitted it and then lost its answer: it arrived once, and counts. Reading the log
            // can fail for a passing reason too: that retries, it does not make the delivery dead.
            guard let submitted = try await submitEvent(of: reference) else { throw error }
            if let named = submitted.authenticationTags, !reference.sent(named) {
                throw PostfachError(code: .conflict, message: "the FIT-Connect submission was submitted with content this sender never encrypted")
            }
            return receipt(delivery, reference, alreadyPresent: true)
        }
        return receipt(delivery, reference, alreadyPresent: false)
    }

    static func encoded(_ reference: Reference) throws -> String {
        String(decoding: try JSONEncoder().encode(reference), as: UTF8.self)
    }

    func receipt(_ delivery: Delivery, _ reference: Reference, alreadyPresent: Bool) -> Receipt {
        Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind,
                location: "fit-connect:submission/\(reference.submissionId)?case=\(reference.caseId)",
                deliveredAt: Date(), payloadSHA256: delivery.payloadSHA256, alreadyPresent: alreadyPresent,
                awaitsConfirmation: true)
    }

    /// The destination must be active and take `schemaURI` as XML.
    static func check(destination: [String: Any], schemaURI: String) throws {
        guard destination["status"] as? String == "active" else {
            throw PostfachError(code: .rejected, message: "the FIT-Connect destination is '\(destination["status"] ?? "?")', not active")
        }
        let schemas = (destination["services"] as? [[String: Any]] ?? []).flatMap { $0["submissionSchemas"] as? [[String: Any]] ?? [] }
        guard schemas.contains(where: { $0["schemaUri"] as? String == schemaURI && $0["mimeType"] as? String == "application/xml" }) else {
            throw PostfachError(code: .rejected, message: "the FIT-Connect destination does not take the schema \(schemaURI) as XML")
        }
    }

    /// The destination's encryption key, checked: RSA, `wrapKey`, RSA-OAEP-256, at least 4096 bits, and with trust
    /// roots configured an `x5c` chain to one of them whose leaf holds this very key.
    func encryptionKey(destinationID: String, kid: String) async throws -> RSAJWK {
        let json = try await object("GET", "/v1/destinations/\(destinationID)/keys/\(kid)")
        let key: RSAJWK
        do { key = try RSAJWK(json: json) } catch { throw PostfachError(code: .rejected, message: "the destination's key: \(error)") }
        guard key.keyOperations?.contains("wrapKey") == true, (key.alg ?? "RSA-OAEP-256") == "RSA-OAEP-256" else {
            throw PostfachError(code: .rejected, message: "the destination's key is not an RSA-OAEP-256 key for wrapKey")
        }
        guard key.bitCount >= 4096 else {
            throw PostfachError(code: .rejected, message: "the destination's key has \(key.bitCount) bits; FIT-Connect requires 4096")
        }
        if !configuration.trustRoots.isEmpty { try await checkChain(of: key) }
        return key
    }

    func checkChain(of key: RSAJWK, failing code: PostfachError.Code = .rejected) async throws {
        do { try await verifyChain(of: key) } catch let error as PostfachError {
            throw PostfachError(code: code, message: error.message)
        }
    }

    private func verifyChain(of key: RSAJWK) async throws {
        guard let leafDER = key.certificateChain.first else {
            throw PostfachError(code: .rejected, message: "the destination's key has no certificate (x5c)")
        }
        let leaf: Certificate
        let intermediates: [Certificate]
        do {
            leaf = try Certificate(derEncoded: Array(leafDER))
            intermediates = try key.certificateChain.dropFirst().map { try Certificate(derEncoded: Array($0)) }
        } catch { throw PostfachError(code: .rejected, message: "the destination's x5c is not DER certificates") }
        guard let leafKey = _RSA.Signing.PublicKey(leaf.publicKey), let primitives = try? leafKey.getKeyPrimitives(),
              primitives.modulus.drop(while: { $0 == 0 }) == key.n.drop(while: { $0 == 0 }),
              primitives.publicExponent.drop(while: { $0 == 0 }) == key.e.drop(while: { $0 == 0 }) else {
            throw PostfachError(code: .rejected, message: "the destination's x5c certificate is not for this key")
        }
        var verifier = Verifier(rootCertificates: CertificateStore(configuration.trustRoots)) {
            RFC5280Policy(validationTime: Date())
        }
        guard case .validCertificate = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates)) else {
            throw PostfachError(code: .rejected, message: "the destination's key certificate does not chain to a configured trust root")
        }
    }

    /// FIT-Connect metadata (schema 1.0.0): the data's SHA-512 and schema, no attachments, the LeiKa service, and
    /// the portal's `authenticationInformation` and `paymentInformation` when its metadata carried them.
    static func metadata(for data: Data, schemaURI: String, delivery: Delivery) throws -> Data {
        var metadata: [String: Any] = [
            "$schema": "https://schema.fitko.de/fit-connect/metadata/1.0.0/metadata.schema.json",
            "contentStructure": [
                "data": ["hash": ["type": "sha512", "content": Hex.lowercase(SHA512.hash(data: data))],
                         "submissionSchema": ["schemaUri": schemaURI, "mimeType": "application/xml"]],
                "attachments": [Any](),
            ],
        ]
        if let leika = delivery.metadata.leikaKey {
            metadata["publicServiceType"] = ["identifier": "urn:de:fim:leika:leistung:\(leika)"]
        }
        if let portal = delivery.metadata.portal,
           let object = try? JSONSerialization.jsonObject(with: Data(portal.utf8)) as? [String: Any] {
            for key in ["authenticationInformation", "paymentInformation"] where object[key] != nil { metadata[key] = object[key] }
        }
        return try JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])
    }

    /// One API call with the cached token (renewed once when refused), answered with a JSON object.
    func object(_ method: String, _ path: String, json: [String: Any]? = nil) async throws -> [String: Any] {
        for attempt in 0..<2 {
            let token = try await tokens.token(renewing: attempt > 0) { try await self.requestToken() }
            var request = HTTPClientRequest(url: configuration.apiURL + path)
            request.method = HTTPMethod(rawValue: method)
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            if let json {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
            }
            let (status, headers, body) = try await send(request)
            if status == 401 && attempt == 0 { continue }
            try Self.check(status: status, headers: headers, body: body, what: "\(method) \(path.split(separator: "/").prefix(3).joined(separator: "/"))")
            return (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
        }
        throw PostfachError(code: .authenticationFailed, message: "FIT-Connect refuses the access token")
    }

    func requestToken() async throws -> (String, Duration) {
        var request = HTTPClientRequest(url: configuration.tokenURL)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        var form = "grant_type=client_credentials&client_id=\(Self.formEncoded(configuration.clientID))"
            + "&client_secret=\(Self.formEncoded(configuration.clientSecret))"
        if let scope = configuration.scope { form += "&scope=\(Self.formEncoded(scope))" }
        request.body = .bytes(ByteBuffer(string: form))
        let (status, headers, body) = try await send(request)
        if status == 400 || status == 401 {
            throw PostfachError(code: .authenticationFailed, message: "the FIT-Connect token endpoint refuses the client (HTTP \(status))")
        }
        try Self.check(status: status, headers: headers, body: body, what: "token")
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
              let token = object["access_token"] as? String else {
            throw PostfachError(code: .unavailable, message: "the FIT-Connect token answer has no access_token")
        }
        return (token, .seconds((object["expires_in"] as? Int) ?? 300))
    }

    func send(_ request: HTTPClientRequest) async throws -> (Int, HTTPHeaders, Data) {
        do {
            let response = try await client.execute(request, deadline: .now() + .nanoseconds(configuration.requestTimeout.clampedNanoseconds))
            var body = ByteBuffer()
            for try await var chunk in response.body {
                body.writeBuffer(&chunk)
                if body.readableBytes > 4 << 20 { break }
            }
            return (Int(response.status.code), response.headers, Data(body.readableBytesView))
        } catch let error as PostfachError {
            throw error
        } catch is CancellationError {
            throw PostfachError(code: .cancelled, message: "cancelled")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw PostfachError(code: .timeout, message: "FIT-Connect did not answer in time")
        } catch {
            throw PostfachError(code: .unavailable, message: "FIT-Connect cannot be reached: \(error)")
        }
    }

    /// 2xx passes; 429, 408, 425 and 5xx are retried (honouring `Retry-After`); 401/403 fail authentication;
    /// every other answer is refused with its problem details.
    static func check(status: Int, headers: HTTPHeaders, body: Data, what: String) throws {
        guard !(200..<300).contains(status) else { return }
        let retryAfter = headers.first(name: "Retry-After").flatMap(Int.init).map { Duration.seconds(min($0, 86_400)) }
        var detail = ""
        if let problem = try? JSONSerialization.jsonObject(with: body) as? [String: Any] {
            detail = ["type", "title", "detail"].compactMap { key in problem[key].map { "\(key): \(String(describing: $0).prefix(300))" } }
                .joined(separator: "; ")
        }
        let message = "\(what): HTTP \(status)" + (detail.isEmpty ? "" : " (\(detail))")
        switch status {
        case 429: throw PostfachError(code: .rateLimited, message: message, retryAfter: retryAfter)
        case 408, 425, 500..<600: throw PostfachError(code: .unavailable, message: message, retryAfter: retryAfter)
        case 401, 403: throw PostfachError(code: .authenticationFailed, message: message)
        default: throw PostfachError(code: .rejected, message: message)
        }
    }

    static func formEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")) ?? ""
    }
}

/// The access token, shared by concurrent deliveries and renewed a minute before it ends (or when refused).
actor TokenCache {
    private var token: String?
    private var until = ContinuousClock.now

    func token(renewing: Bool, fetch: @Sendable () async throws -> (String, Duration)) async throws -> String {
        if !renewing, let token, ContinuousClock.now + .seconds(60) < until { return token }
        let (fresh, lifetime) = try await fetch()
        token = fresh
        until = ContinuousClock.now + lifetime
        return fresh
    }
}


extension FITConnectBackend {
    /// Registers kind `fit-connect` (Docs/backends.md): `tokenURL`, `apiURL`, `clientId`, the secret `clientSecret`
    /// (`clientSecretEnv` or `clientSecretFile`), `scope`, `destination` (for every Postfach of this backend) and/or
    /// `destinationsFile` (a JSON object Postfach → destination id), `schemaUri` (`{schema}` for the schema id),
    /// `serviceName`, `trustRoots` (PEM file of the authorities the destinations' key certificates chain to),
    /// `connectTimeoutSeconds`, `requestTimeoutSeconds`.
    public static func register(in registry: inout PostfachBackendRegistry) {
        let parameters: Set<String> = ["tokenURL", "apiURL", "clientId", "clientSecret", "clientSecretEnv", "clientSecretFile",
                                       "scope", "destination", "destinationsFile", "schemaUri", "serviceName", "trustRoots",
                                       "connectTimeoutSeconds", "requestTimeoutSeconds"]
        registry.register(kind: "fit-connect", parameters: parameters) { settings in
            var configuration = try configuration(from: settings)
            // Test hook: the process dies at the worst moment, between create (recorded) and submit.
            if settings.environment["AMTSBOTE_TEST_KILL_AFTER_FIT_CONNECT_CREATE"] == "1" {
                configuration.afterCreate = { _ in kill(getpid(), SIGKILL) }
            }
            return try FITConnectBackend(configuration: configuration)
        }
    }

    static func configuration(from settings: BackendSettings) throws -> Configuration {
        let p = settings.parameters
        func required(_ key: String) throws -> String {
            guard let value = p[key], !value.isEmpty else {
                throw PostfachError(code: .rejected, message: "a fit-connect backend needs the parameter '\(key)'")
            }
            return value
        }
        guard let secret = try settings.secret("clientSecret") else {
            throw PostfachError(code: .rejected, message: "a fit-connect backend needs 'clientSecretEnv' or 'clientSecretFile'")
        }
        var destinations: [String: String] = [:]
        if let file = p["destinationsFile"] {
            let url = settings.path(file)
            guard let data = FileManager.default.contents(atPath: url.path),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: String] else {
                throw PostfachError(code: .rejected, message: "\(url.path) ('destinationsFile') is not a JSON object of Postfach → destination id")
            }
            destinations = object
        }
        for (postfach, id) in destinations where UUID(uuidString: id) == nil {
            throw PostfachError(code: .rejected, message: "the destination of Postfach '\(postfach)' is not a UUID")
        }
        if let id = p["destination"], UUID(uuidString: id) == nil {
            throw PostfachError(code: .rejected, message: "'destination' is not a UUID")
        }
        guard p["destination"] != nil || !destinations.isEmpty else {
            throw PostfachError(code: .rejected, message: "a fit-connect backend needs 'destination' or 'destinationsFile'")
        }
        var configuration = Configuration(tokenURL: try required("tokenURL"), apiURL: try required("apiURL"),
                                          clientID: try required("clientId"), clientSecret: secret, scope: p["scope"],
                                          destinations: destinations, defaultDestination: p["destination"])
        if let uri = p["schemaUri"] { configuration.schemaURI = uri }
        if let name = p["serviceName"] { configuration.serviceName = name }
        if let file = p["trustRoots"] {
            let url = settings.path(file)
            guard let text = try? String(contentsOf: url, encoding: .utf8),
                  let roots = try? PEMDocument.parseMultiple(pemString: text).map({ try Certificate(pemDocument: $0) }), !roots.isEmpty else {
                throw PostfachError(code: .rejected, message: "\(url.path) ('trustRoots') holds no PEM certificate")
            }
            configuration.trustRoots = roots
        }
        for (key, path) in [("connectTimeoutSeconds", \Configuration.connectTimeout), ("requestTimeoutSeconds", \Configuration.requestTimeout)] {
            guard let text = p[key] else { continue }
            guard let value = Double(text), value > 0, value <= 86_400 else {
                throw PostfachError(code: .rejected, message: "'\(key)' must be a positive number of seconds, not '\(text)'")
            }
            configuration[keyPath: path] = .milliseconds(Int64(value * 1000))
        }
        return configuration
    }
}
