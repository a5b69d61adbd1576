import Crypto
import CryptoExtras
import Foundation
import Hummingbird
import HTTPTypes
import JOSE
import NIOCore
import SwiftASN1
import X509

/// What the FIT-Connect part of the stand-in accepts: one client, the submission schemas its destinations take,
/// and the size of its keys.
public struct FITConnectOptions: Sendable {
    public var clientID: String
    public var clientSecret: String
    /// Schema URIs (mime type application/xml) every destination accepts.
    public var schemaURIs: [String]
    /// RSA key size of the destinations' encryption and signature keys (FIT-Connect requires 4096).
    public var keyBits: Int
    /// Keep each receiver's accept or reject event back until `POST /_fit-connect/verdicts` releases it (to see a
    /// delivery wait for its answer, and to release forged or tampered answers on request).
    public var holdVerdicts: Bool

    public init(clientID: String = "amtsbote-test", clientSecret: String = "stand-in-secret",
                schemaURIs: [String] = [], keyBits: Int = 4096, holdVerdicts: Bool = false) {
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.schemaURIs = schemaURIs
        self.keyBits = keyBits
        self.holdVerdicts = holdVerdicts
    }
}

/// The keys of the FIT-Connect stand-in, made at start: the destinations' encryption key (with a certificate from
/// the stand-in's own authority, as `x5c`), the destinations' signature key for accept and reject events, and the
/// delivery service's signature key for its own events.
struct FITConnectKeys: Sendable {
    /// The encryption key as DER (its type is not `Sendable`; made again where used).
    private let encryptionDER: Data
    var encryption: _RSA.Encryption.PrivateKey {
        get throws { try _RSA.Encryption.PrivateKey(derRepresentation: encryptionDER) }
    }
    let encryptionKid = "stand-in-encryption"
    let encryptionCertificate: [UInt8]
    let destinationSigning: _RSA.Signing.PrivateKey
    let destinationSigningKid = "stand-in-destination-signature"
    let destinationSigningCertificate: [UInt8]
    let serviceSigning: _RSA.Signing.PrivateKey
    let serviceKid = "stand-in-delivery-service"
    /// PEM of the authority that issued the encryption key's certificate.
    let authorityPEM: String

    init(bits: Int) throws {
        let size: _RSA.Signing.KeySize = bits >= 4096 ? .bits4096 : bits >= 3072 ? .bits3072 : .bits2048
        let encryption = try _RSA.Encryption.PrivateKey(keySize: size)
        encryptionDER = encryption.derRepresentation
        destinationSigning = try _RSA.Signing.PrivateKey(keySize: size)
        serviceSigning = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let authorityKey = P256.Signing.PrivateKey()
        let authorityName = try DistinguishedName { CommonName("amtsbote-testserver authority") }
        let authority = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(authorityKey.publicKey),
            notValidBefore: Date() - 3600, notValidAfter: Date() + 30 * 86400, issuer: authorityName, subject: authorityName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                KeyUsage(keyCertSign: true)
            },
            issuerPrivateKey: .init(authorityKey))
        /// A leaf certificate from the stand-in's authority for `key`, DER.
        func certificate(for key: _RSA.Signing.PublicKey, name: String, usage: KeyUsage) throws -> [UInt8] {
            let leaf = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key),
                notValidBefore: Date() - 3600, notValidAfter: Date() + 30 * 86400, issuer: authorityName,
                subject: try DistinguishedName { CommonName(name) },
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    usage
                },
                issuerPrivateKey: .init(authorityKey))
            var serializer = DER.Serializer()
            try serializer.serialize(leaf)
            return serializer.serializedBytes
        }
        encryptionCertificate = try certificate(
            for: try _RSA.Signing.PublicKey(derRepresentation: encryption.publicKey.derRepresentation),
            name: "stand-in destination encryption key", usage: KeyUsage(keyEncipherment: true))
        destinationSigningCertificate = try certificate(for: destinationSigning.publicKey,
                                                        name: "stand-in destination signature key",
                                                        usage: KeyUsage(digitalSignature: true))
        authorityPEM = try authority.serializeAsPEM().pemString
    }

    /// The public JWK of an RSA key.
    static func jwk(n: Data, e: Data, kid: String, alg: String, operations: [String], x5c: [[UInt8]] = []) -> [String: Any] {
        var key: [String: Any] = ["kty": "RSA", "n": Base64URL.encode(n), "e": Base64URL.encode(e), "kid": kid, "alg": alg,
                                  "key_ops": operations]
        if !x5c.isEmpty { key["x5c"] = x5c.map { Data($0).base64EncodedString() } }
        return key
    }

    var encryptionJWK: [String: Any] {
        get throws {
            let primitives = try encryption.publicKey.getKeyPrimitives()
            return Self.jwk(n: primitives.modulus, e: primitives.publicExponent, kid: encryptionKid, alg: "RSA-OAEP-256",
                            operations: ["wrapKey"], x5c: [encryptionCertificate])
        }
    }

    func signatureJWK(of key: _RSA.Signing.PrivateKey, kid: String, x5c: [[UInt8]] = []) throws -> [String: Any] {
        let primitives = try key.publicKey.getKeyPrimitives()
        return Self.jwk(n: primitives.modulus, e: primitives.publicExponent, kid: kid, alg: "PS512", operations: ["verify"],
                        x5c: x5c)
    }
}

/// One submission as the FIT-Connect stand-in holds it.
public struct FITConnectSubmission: Sendable, Hashable {
    public var submissionID: String
    public var caseID: String
    public var destinationID: String
    public var serviceIdentifier: String?
    /// `created`, `submitted`, then `accepted` or `rejected`.
    public var state: String
    /// SHA-256 of the decrypted data (hex), once submitted.
    public var dataSHA256: String?
    /// Why the receiver rejected it (hash, schema or metadata checks), if it did.
    public var problems: [String]
    /// Submit requests for this submission (a second one is refused).
    public var submitRequests: Int
    /// Attachment ids announced at create, in order.
    public var announcedAttachments: [String] = []
    /// Uploaded attachments by id: the compact JWE as uploaded (a later upload replaces it, as FIT-Connect allows).
    var attachments: [String: String] = [:]
    /// Attachments uploaded so far.
    public var uploadedAttachments: Int { attachments.count }
}

/// The FIT-Connect state: tokens handed out, submissions, the event log per case.
actor FITConnectState {
    private var tokens: Set<String> = []
    private(set) var submissions: [String: FITConnectSubmission] = [:]
    private var order: [String] = []
    private var events: [String: [String]] = [:]

    func issueToken() -> String {
        let token = UUID().uuidString
        tokens.insert(token)
        return token
    }

    func knows(token: String) -> Bool { tokens.contains(token) }

    func create(destination: String, service: String?, attachments: [String]) -> FITConnectSubmission {
        let submission = FITConnectSubmission(submissionID: UUID().uuidString.lowercased(), caseID: UUID().uuidString.lowercased(),
                                              destinationID: destination, serviceIdentifier: service, state: "created",
                                              dataSHA256: nil, problems: [], submitRequests: 0, announcedAttachments: attachments)
        submissions[submission.submissionID] = submission
        order.append(submission.submissionID)
        return submission
    }

    func update(_ submission: FITConnectSubmission) { submissions[submission.submissionID] = submission }

    /// Stores an attachment of a submission not yet submitted; `false` when it was submitted meanwhile.
    func attach(_ jwe: String, id: String, to submissionID: String) -> Bool {
        guard submissions[submissionID]?.state == "created" else { return false }
        submissions[submissionID]?.attachments[id] = jwe
        return true
    }

    func append(event: String, toCase caseID: String) { events[caseID, default: []].append(event) }

    /// Verdicts kept back (``FITConnectOptions/holdVerdicts``), in order: case and how to sign them when released.
    private(set) var held: [HeldVerdict] = []

    func hold(_ verdict: HeldVerdict) { held.append(verdict) }

    func takeHeld() -> [HeldVerdict] {
        defer { held = [] }
        return held
    }

    func events(ofCase caseID: String) -> [String]? { events[caseID] }

    var all: [FITConnectSubmission] { order.compactMap { submissions[$0] } }
}

/// A receiver's verdict the stand-in keeps back until released.
struct HeldVerdict: Sendable {
    var submission: FITConnectSubmission
    /// The tags of the metadata and the data.
    var authenticationTags: [String: String]
    /// The tags of the attachments, by id.
    var attachmentTags: [String: String]
}

/// The subset of the FIT-Connect Submission API v1 a sender needs, as a local stand-in (Docs/backends.md):
/// `POST /token` (client credentials), `GET /v1/destinations/{id}` (every UUID is an active destination that takes
/// the configured schemas), its keys, `POST /v1/submissions`, `PUT /v1/submissions/{id}` (decrypts data and
/// metadata, checks the metadata's SHA-512 and schema, then accepts or rejects as a receiver would),
/// `GET /v1/cases/{id}/events` (Security Event Tokens signed with PS512), `GET /.well-known/jwks.json`.
struct FITConnectStandIn: Sendable {
    let options: FITConnectOptions
    let keys: FITConnectKeys
    let state = FITConnectState()
    /// Injected into every API call (token, destination, keys, create, upload, submit, events): 429 and 503 before
    /// acting; a dropped connection or a slow answer after.
    let faults: StandInFaults
    let dice: Dice
    static let events = "https://schema.fitko.de/fit-connect/events/"

    func register(on router: Router<StandInContext>) {
        router.post("/token") { request, context in try await faulty(context) { try await token(request) } }
        router.get("/.well-known/jwks.json") { _, _ in
            json(.ok, ["keys": [try keys.signatureJWK(of: keys.serviceSigning, kid: keys.serviceKid)]])
        }
        router.get("/_fit-connect/authority.pem") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/x-pem-file"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: keys.authorityPEM)))
        }
        router.get("/_received/fit-connect") { _, _ in
            let submissions = await state.all.map { submission -> [String: Any] in
                var object: [String: Any] = ["submissionId": submission.submissionID, "caseId": submission.caseID,
                                             "destinationId": submission.destinationID, "state": submission.state,
                                             "problems": submission.problems, "submitRequests": submission.submitRequests]
                if let sha = submission.dataSHA256 { object["dataSHA256"] = sha }
                if let service = submission.serviceIdentifier { object["service"] = service }
                return object
            }
            let data = try JSONSerialization.data(withJSONObject: submissions, options: [.sortedKeys])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.get("/v1/destinations/:destination") { request, context in
            try await authorized(request) { try await faulty(context) { try destination(context.parameters.get("destination") ?? "") } }
        }
        router.get("/v1/destinations/:destination/keys/:kid") { request, context in
            try await authorized(request) {
                try await faulty(context) { try keyAnswer(context.parameters.get("kid")) }
            }
        }
        router.post("/v1/submissions") { request, context in
            try await authorized(request) { try await faulty(context) { try await create(request) } }
        }
        router.put("/v1/submissions/:submission") { request, context in
            try await authorized(request) {
                try await faulty(context) { try await submit(request, id: context.parameters.get("submission") ?? "") }
            }
        }
        router.put("/v1/submissions/:submission/attachments/:attachment") { request, context in
            try await authorized(request) {
                try await faulty(context) {
                    try await upload(request, submission: context.parameters.get("submission") ?? "",
                                     attachment: context.parameters.get("attachment") ?? "")
                }
            }
        }
        router.get("/v1/cases/:case/events") { request, context in
            try await authorized(request) { try await faulty(context) {
                guard let log = await state.events(ofCase: context.parameters.get("case") ?? "") else {
                    return problem(.notFound, "case-not-found", "no such case")
                }
                // Pages as FIT-Connect serves them: `limit` 1–500 (default 100) from `offset`.
                let limit = min(max(request.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 100, 1), 500)
                let offset = min(max(request.uri.queryParameters.get("offset").flatMap { Int($0) } ?? 0, 0), log.count)
                let page = Array(log[offset..<min(offset + limit, log.count)])
                return json(.ok, ["count": page.count, "offset": offset, "totalCount": log.count, "eventLog": page])
            } }
        }
        // Releases the verdicts held back (``FITConnectOptions/holdVerdicts``). `?reject=1` turns them into rejections.
        // `?forge=1` adds events signed with a key that is not the destination's, `?tamper=1` accepts naming other
        // authentication tags than were submitted: a sender must refuse both, and the verdicts stay held.
        router.post("/_fit-connect/verdicts") { request, _ in
            let query = request.uri.queryParameters
            let forge = query.get("forge") == "1", tamper = query.get("tamper") == "1", reject = query.get("reject") == "1"
            let held = forge || tamper ? await state.held : await state.takeHeld()
            for var verdict in held {
                // Forged and tampered answers are accepts; the genuine verdicts stay held for a later release.
                if forge || tamper { verdict.submission.problems = [] }
                if tamper { verdict.authenticationTags["data"] = Base64URL.encode(Data(repeating: 7, count: 16)) }
                if reject && !(forge || tamper) {
                    verdict.submission.state = "rejected"
                    verdict.submission.problems = ["the receiving office cannot process this application (stand-in)"]
                    await state.update(verdict.submission)
                }
                await state.append(event: try self.verdict(verdict, forged: forge), toCase: verdict.submission.caseID)
            }
            return json(.ok, ["released": held.count])
        }
    }

    /// A destination's key by id: the encryption key, or the signature key of accept and reject events.
    func keyAnswer(_ kid: String?) throws -> Response {
        switch kid {
        case keys.encryptionKid: return json(.ok, try keys.encryptionJWK)
        case keys.destinationSigningKid:
            return json(.ok, try keys.signatureJWK(of: keys.destinationSigning, kid: keys.destinationSigningKid,
                                                   x5c: [keys.destinationSigningCertificate]))
        default: return problem(.notFound, "key-not-found", "no such key")
        }
    }

    /// `act` with the configured faults around it.
    func faulty(_ context: StandInContext, _ act: () async throws -> Response) async throws -> Response {
        if await dice.roll(faults.rateLimited) {
            return Response(status: .tooManyRequests, headers: [.retryAfter: "\(faults.retryAfterSeconds)"])
        }
        if await dice.roll(faults.unavailable) { return problem(.serviceUnavailable, "unavailable", "injected outage") }
        let response = try await act()
        if await dice.roll(faults.reset) {
            // Done, but the sender never hears of it.
            context.channel.close(mode: .all, promise: nil)
            return Response(status: .internalServerError)
        }
        if await dice.roll(faults.slow) { try? await Task.sleep(for: faults.slowFor) }
        return response
    }

    func token(_ request: Request) async throws -> Response {
        let body = String(buffer: try await request.body.collect(upTo: 64 << 10))
        var fields: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        guard fields["grant_type"] == "client_credentials", fields["client_id"] == options.clientID,
              fields["client_secret"] == options.clientSecret else {
            return json(.unauthorized, ["error": "invalid_client"])
        }
        return json(.ok, ["access_token": await state.issueToken(), "token_type": "Bearer", "expires_in": 1800])
    }

    func authorized(_ request: Request, _ body: () async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              await state.knows(token: String(header.dropFirst(7))) else {
            return problem(.unauthorized, "unauthorized", "no valid access token")
        }
        return try await body()
    }

    func destination(_ id: String) throws -> Response {
        guard UUID(uuidString: id) != nil else { return problem(.notFound, "destination-not-found", "no such destination") }
        let schemas = options.schemaURIs.map { ["schemaUri": $0, "mimeType": "application/xml"] }
        return json(.ok, [
            "destinationId": id, "status": "active", "encryptionKid": keys.encryptionKid, "metadataVersions": ["1.0.0"],
            "services": [["identifier": "urn:de:fim:leika:leistung:*", "regions": ["DE"], "submissionSchemas": schemas]],
        ])
    }

    func create(_ request: Request) async throws -> Response {
        guard let body = try? JSONSerialization.jsonObject(with: Data(try await request.body.collect(upTo: 1 << 20).readableBytesView)) as? [String: Any],
              let destination = body["destinationId"] as? String, UUID(uuidString: destination) != nil,
              let announced = body["announcedAttachments"] as? [String], announced.count <= 100,
              announced.allSatisfy({ UUID(uuidString: $0) != nil }), Set(announced).count == announced.count,
              let service = body["serviceType"] as? [String: Any], service["name"] is String else {
            return problem(.badRequest, "invalid-request",
                           "destinationId, announcedAttachments (distinct UUIDs, at most 100) and serviceType.name are required")
        }
        let submission = await state.create(destination: destination, service: service["identifier"] as? String,
                                            attachments: announced.map { $0.lowercased() })
        await state.append(event: try set("create-submission", submission, issuer: "stand-in"), toCase: submission.caseID)
        return json(.created, ["destinationId": destination, "submissionId": submission.submissionID, "caseId": submission.caseID])
    }

    /// `PUT /v1/submissions/{id}/attachments/{attachmentId}`: a compact JWE (`application/jose`) for an announced
    /// attachment of a submission not yet submitted; 204.
    func upload(_ request: Request, submission id: String, attachment: String) async throws -> Response {
        guard let submission = await state.submissions[id] else { return problem(.notFound, "submission-not-found", "no such submission") }
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/jose") == true else {
            return problem(.unsupportedMediaType, "unsupported-media-type", "an attachment is a compact JWE sent as application/jose")
        }
        guard submission.state == "created" else {
            return problem(.unprocessableContent, "submission-state-invalid", "the submission was submitted already")
        }
        guard submission.announcedAttachments.contains(attachment.lowercased()) else {
            return problem(.unprocessableContent, "attachment-not-announced", "this attachment id was not announced at create")
        }
        let body = String(buffer: try await request.body.collect(upTo: 64 << 20))
        guard (try? JWE.parts(of: body)) != nil else { return problem(.badRequest, "invalid-request", "the body is no compact JWE") }
        // Stored in one step of the state, so that a submit meanwhile is not overwritten.
        guard await state.attach(body, id: attachment.lowercased(), to: id) else {
            return problem(.unprocessableContent, "submission-state-invalid", "the submission was submitted already")
        }
        return Response(status: .noContent)
    }

    func submit(_ request: Request, id: String) async throws -> Response {
        guard var submission = await state.submissions[id] else { return problem(.notFound, "submission-not-found", "no such submission") }
        submission.submitRequests += 1
        await state.update(submission)
        guard submission.state == "created" else {
            return problem(.unprocessableContent, "submission-state-invalid", "the submission was submitted already")
        }
        guard let body = try? JSONSerialization.jsonObject(with: Data(try await request.body.collect(upTo: 256 << 20).readableBytesView)) as? [String: Any],
              let metadataJWE = body["encryptedMetadata"] as? String else {
            return problem(.badRequest, "invalid-request", "encryptedMetadata is required")
        }
        let missing = submission.announcedAttachments.filter { submission.attachments[$0] == nil }
        guard missing.isEmpty else {
            return problem(.unprocessableContent, "missing-attachments", "announced attachments were not uploaded: \(missing.joined(separator: ", "))")
        }
        let dataJWE = body["encryptedData"] as? String
        var problems: [String] = []
        var tags: [String: String] = [:]
        var data: Data?
        var attachmentTags: [String: String] = [:]
        do {
            tags["metadata"] = try JWE.parts(of: metadataJWE).authenticationTag
            if let dataJWE { tags["data"] = try JWE.parts(of: dataJWE).authenticationTag }
            for (id, jwe) in submission.attachments { attachmentTags[id] = try JWE.parts(of: jwe).authenticationTag }
        } catch { return problem(.badRequest, "invalid-request", "encryptedMetadata and encryptedData must be compact JWEs") }
        do {
            let metadata = try JWE.decrypt(metadataJWE, with: keys.encryption).plaintext
            if let dataJWE { data = try JWE.decrypt(dataJWE, with: keys.encryption).plaintext }
            let attachments = try submission.attachments.mapValues { try JWE.decrypt($0, with: keys.encryption).plaintext }
            problems = Self.check(metadata: metadata, data: data, attachments: attachments, schemas: options.schemaURIs)
        } catch {
            problems = ["decryption: \(error)"]
        }
        submission.state = problems.isEmpty ? "accepted" : "rejected"
        submission.problems = problems
        submission.dataSHA256 = data.map { SHA256.hash(data: $0).map { String(format: "%02x", $0) }.joined() }
        await state.update(submission)
        var eventTags: [String: Any] = tags
        if !attachmentTags.isEmpty { eventTags["attachments"] = attachmentTags }
        await state.append(event: try set("submit-submission", submission, issuer: "stand-in",
                                          payload: ["authenticationTags": eventTags]), toCase: submission.caseID)
        // The receiver's answer, signed with the destination's key.
        let held = HeldVerdict(submission: submission, authenticationTags: tags, attachmentTags: attachmentTags)
        if options.holdVerdicts {
            await state.hold(held)
        } else {
            await state.append(event: try verdict(held), toCase: submission.caseID)
        }
        return json(.accepted, ["destinationId": submission.destinationID, "submissionId": submission.submissionID,
                                "caseId": submission.caseID, "attachments": [String]()])
    }

    /// The receiver's accept (naming the authentication tags it received) or reject (with its problems), signed
    /// with the destination's signature key; `forged`: with another key under the destination key's id.
    func verdict(_ held: HeldVerdict, forged: Bool = false) throws -> String {
        let key = forged ? keys.serviceSigning : keys.destinationSigning, submission = held.submission
        var tags: [String: Any] = held.authenticationTags
        if !held.attachmentTags.isEmpty { tags["attachments"] = held.attachmentTags }
        return submission.problems.isEmpty
            ? try set("accept-submission", submission, issuer: submission.destinationID, payload: ["authenticationTags": tags],
                      key: key, kid: keys.destinationSigningKid)
            : try set("reject-submission", submission, issuer: submission.destinationID,
                      payload: ["problems": submission.problems.map { ["type": "about:blank", "title": $0] }],
                      key: key, kid: keys.destinationSigningKid)
    }

    /// What a receiver checks: the metadata's content structure, the data's SHA-512, the schema.
    static func check(metadata: Data, data: Data?, attachments: [String: Data] = [:], schemas: [String]) -> [String] {
        guard let object = try? JSONSerialization.jsonObject(with: metadata) as? [String: Any],
              let structure = object["contentStructure"] as? [String: Any],
              let listed = structure["attachments"] as? [[String: Any]] else {
            return ["metadata: no contentStructure with attachments"]
        }
        var problems: [String] = []
        // Each uploaded attachment listed once, with its SHA-512, purpose and media type; nothing listed that was not uploaded.
        let ids = listed.compactMap { ($0["attachmentId"] as? String)?.lowercased() }
        if Set(ids) != Set(attachments.keys) || ids.count != listed.count {
            problems.append("metadata: the attachments listed are not the attachments uploaded")
        }
        for entry in listed {
            guard let id = (entry["attachmentId"] as? String)?.lowercased(), let bytes = attachments[id] else { continue }
            let hash = entry["hash"] as? [String: Any]
            if hash?["type"] as? String != "sha512" || hash?["content"] as? String != sha512Hex(bytes) {
                problems.append("attachment \(id): the SHA-512 in the metadata does not match")
            }
            if !["form", "attachment", "report"].contains(entry["purpose"] as? String ?? "") || !(entry["mimeType"] is String) {
                problems.append("attachment \(id): purpose or mimeType missing")
            }
        }
        guard let data else { return problems + ["data: missing"] }
        guard let declared = structure["data"] as? [String: Any], let hash = declared["hash"] as? [String: Any],
              let schema = declared["submissionSchema"] as? [String: Any] else {
            return problems + ["metadata: contentStructure.data lacks hash or submissionSchema"]
        }
        if hash["type"] as? String != "sha512" || hash["content"] as? String != sha512Hex(data) {
            problems.append("data: the SHA-512 in the metadata does not match the data")
        }
        if schema["mimeType"] as? String != "application/xml" { problems.append("metadata: submissionSchema.mimeType is not application/xml") }
        if !schemas.contains(schema["schemaUri"] as? String ?? "") { problems.append("metadata: the destination does not accept this schema") }
        return problems
    }

    static func sha512Hex(_ data: Data) -> String { SHA512.hash(data: data).map { String(format: "%02x", $0) }.joined() }

    /// A Security Event Token (RFC 8417) for one event of a submission, signed with PS512.
    func set(_ event: String, _ submission: FITConnectSubmission, issuer: String, payload: [String: Any]? = nil,
             key: _RSA.Signing.PrivateKey? = nil, kid: String? = nil) throws -> String {
        var claims: [String: Any] = ["iss": issuer, "iat": Int(Date().timeIntervalSince1970), "jti": UUID().uuidString.lowercased(),
                                     "sub": "submission:\(submission.submissionID)", "txn": "case:\(submission.caseID)",
                                     "events": [Self.events + event: payload ?? [:]]]
        if payload != nil { claims["$schema"] = "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json" }
        let body = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        return try JWS.signPS512(body, header: ["typ": "secevent+jwt", "kid": kid ?? keys.serviceKid], key: key ?? keys.serviceSigning)
    }

    func json(_ status: HTTPResponse.Status, _ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    func problem(_ status: HTTPResponse.Status, _ type: String, _ detail: String) -> Response {
        let object: [String: Any] = ["type": "https://schema.fitko.de/fit-connect/submission-api/problems/" + type,
                                     "title": status.reasonPhrase, "status": status.code, "detail": detail]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/problem+json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
