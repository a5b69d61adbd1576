import AmtsboteTestSupport
import AsyncHTTPClient
import Crypto
import Foundation
import JOSE
import NIOCore
import NIOHTTP1
import PostfachStandIn
import SwiftASN1
import Testing
import X509

/// The FIT-Connect part of the stand-in, driven as a sender drives FIT-Connect: token, destination, key, create,
/// encrypt, submit, then the case's event log with its signed Security Event Tokens.
@Suite("amtsbote-testserver: the FIT-Connect subset")
struct FITConnectStandInTests {
    static let schema = "urn:amtsbote:schema:wohnsitz.anmeldung-1.0"

    struct Client {
        let base: String
        var token: String?

        func send(_ method: HTTPMethod, _ path: String, json: [String: Any]? = nil, form: String? = nil) async throws
            -> (status: Int, body: [String: Any]) {
            var request = HTTPClientRequest(url: base + path)
            request.method = method
            if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            if let json {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
            }
            if let form {
                request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
                request.body = .bytes(ByteBuffer(string: form))
            }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            let data = Data(try await response.body.collect(upTo: 16 << 20).readableBytesView)
            return (Int(response.status.code), (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
        }
    }

    @Test("token, destination and its 4096-bit key with x5c, create, submit, and signed events that quote our tags")
    func senderFlow() async throws {
        let standIn = try await RunningStandIn.start(fitConnect: FITConnectOptions(clientSecret: "s3cret", schemaURIs: [Self.schema]))
        var client = Client(base: "http://127.0.0.1:\(standIn.port)")
        #expect(try await client.send(.POST, "/token", form: "grant_type=client_credentials&client_id=amtsbote-test&client_secret=wrong").status == 401)
        let granted = try await client.send(.POST, "/token", form: "grant_type=client_credentials&client_id=amtsbote-test&client_secret=s3cret")
        #expect(granted.status == 200 && granted.body["expires_in"] as? Int == 1800)
        let destinationID = UUID().uuidString.lowercased()
        #expect(try await client.send(.GET, "/v1/destinations/\(destinationID)").status == 401, "no token, no destination")
        client.token = try #require(granted.body["access_token"] as? String)

        let destination = try await client.send(.GET, "/v1/destinations/\(destinationID)")
        #expect(destination.status == 200 && destination.body["status"] as? String == "active")
        let kid = try #require(destination.body["encryptionKid"] as? String)
        let keyAnswer = try await client.send(.GET, "/v1/destinations/\(destinationID)/keys/\(kid)")
        let key = try RSAJWK(json: keyAnswer.body)
        #expect(key.keyOperations == ["wrapKey"] && key.alg == "RSA-OAEP-256" && key.bitCount >= 4096)
        // The x5c leaf carries the same key and is issued by the stand-in's authority.
        let leaf = try Certificate(derEncoded: Array(try #require(key.certificateChain.first)))
        let authority = try Certificate(pemEncoded: try #require(standIn.server.fitConnectAuthorityPEM))
        #expect(leaf.issuer == authority.subject)
        #expect(authority.publicKey.isValidSignature(leaf.signature, for: leaf))

        // A valid submission.
        let created = try await client.send(.POST, "/v1/submissions", json: [
            "destinationId": destinationID, "announcedAttachments": [String](),
            "serviceType": ["name": "Anmeldung", "identifier": "urn:de:fim:leika:leistung:99115001000000"]])
        #expect(created.status == 201)
        let submissionID = try #require(created.body["submissionId"] as? String)
        let caseID = try #require(created.body["caseId"] as? String)
        let data = Data("<antrag>Grüße</antrag>".utf8)
        let sha512 = SHA512.hash(data: data).map { String(format: "%02x", $0) }.joined()
        let metadata = try JSONSerialization.data(withJSONObject: [
            "contentStructure": ["data": ["hash": ["type": "sha512", "content": sha512],
                                          "submissionSchema": ["schemaUri": Self.schema, "mimeType": "application/xml"]],
                                 "attachments": [Any]()]])
        let encryptedData = try JWE.encrypt(data, for: key.encryptionKey, keyID: kid, contentType: "application/xml")
        let encryptedMetadata = try JWE.encrypt(metadata, for: key.encryptionKey, keyID: kid, contentType: "application/json")
        let submitted = try await client.send(.PUT, "/v1/submissions/\(submissionID)",
                                              json: ["encryptedMetadata": encryptedMetadata, "encryptedData": encryptedData])
        #expect(submitted.status == 202)
        #expect(try await client.send(.PUT, "/v1/submissions/\(submissionID)",
                                      json: ["encryptedMetadata": encryptedMetadata, "encryptedData": encryptedData]).status == 422,
                "submitted once only")

        // The event log: the delivery service's events (its jwks) and the receiver's acceptance (the destination's key).
        let log = try await client.send(.GET, "/v1/cases/\(caseID)/events")
        let tokens = try #require(log.body["eventLog"] as? [String])
        #expect(tokens.count == 3)
        let serviceKeys = try await client.send(.GET, "/.well-known/jwks.json")
        let serviceKey = try RSAJWK(json: try #require((serviceKeys.body["keys"] as? [[String: Any]])?.first))
        var events: [String: [String: Any]] = [:]
        for token in tokens {
            let header = try #require(try JSONSerialization.jsonObject(with: Base64URL.decode(token.split(separator: ".")[0])!) as? [String: Any])
            #expect(header["typ"] as? String == "secevent+jwt" && header["alg"] as? String == "PS512")
            let signer = header["kid"] as? String == serviceKey.kid ? serviceKey
                : try RSAJWK(json: try await client.send(.GET, "/v1/destinations/\(destinationID)/keys/\(header["kid"] as? String ?? "")").body)
            let claims = try #require(try JSONSerialization.jsonObject(with: JWS.verify(token, with: signer.verificationKey).payload) as? [String: Any])
            #expect(claims["sub"] as? String == "submission:\(submissionID)" && claims["txn"] as? String == "case:\(caseID)")
            for (uri, payload) in claims["events"] as? [String: [String: Any]] ?? [:] {
                events[String(uri.split(separator: "/").last ?? "")] = payload
            }
        }
        #expect(Set(events.keys) == ["create-submission", "submit-submission", "accept-submission"])
        let tags = try #require(events["accept-submission"]?["authenticationTags"] as? [String: String])
        #expect(tags["data"] == (try JWE.parts(of: encryptedData).authenticationTag))
        #expect(tags["metadata"] == (try JWE.parts(of: encryptedMetadata).authenticationTag))

        // Metadata whose hash does not match the data: rejected by the receiver, with the problem named.
        let second = try await client.send(.POST, "/v1/submissions", json: [
            "destinationId": destinationID, "announcedAttachments": [String](), "serviceType": ["name": "Anmeldung"]])
        let secondID = try #require(second.body["submissionId"] as? String)
        let otherData = try JWE.encrypt(Data("<antrag>anders</antrag>".utf8), for: key.encryptionKey, keyID: kid)
        #expect(try await client.send(.PUT, "/v1/submissions/\(secondID)",
                                      json: ["encryptedMetadata": encryptedMetadata, "encryptedData": otherData]).status == 202)
        let all = await standIn.server.fitConnectSubmissions
        #expect(all.map(\.state) == ["accepted", "rejected"])
        #expect(all.last?.problems.contains { $0.contains("SHA-512") } == true, "\(all.last?.problems ?? [])")
        #expect(all.first?.dataSHA256 == SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined())
        try await standIn.stop()
    }

    @Test("attachments: announced at create, uploaded as application/jose, required at submit, hashed in the metadata, tagged in the events")
    func attachments() async throws {
        let standIn = try await RunningStandIn.start(fitConnect: FITConnectOptions(clientSecret: "s3cret", schemaURIs: [Self.schema]))
        var client = Client(base: "http://127.0.0.1:\(standIn.port)")
        let granted = try await client.send(.POST, "/token", form: "grant_type=client_credentials&client_id=amtsbote-test&client_secret=s3cret")
        client.token = try #require(granted.body["access_token"] as? String)
        let destinationID = UUID().uuidString.lowercased()
        let kid = try #require(try await client.send(.GET, "/v1/destinations/\(destinationID)").body["encryptionKid"] as? String)
        let key = try RSAJWK(json: try await client.send(.GET, "/v1/destinations/\(destinationID)/keys/\(kid)").body)
        func hex(_ data: Data) -> String { SHA512.hash(data: data).map { String(format: "%02x", $0) }.joined() }
        func upload(_ submission: String, _ attachment: String, _ body: String, type: String = "application/jose") async throws -> Int {
            var request = HTTPClientRequest(url: client.base + "/v1/submissions/\(submission)/attachments/\(attachment)")
            request.method = .PUT
            request.headers.add(name: "Authorization", value: "Bearer \(client.token ?? "")")
            request.headers.add(name: "Content-Type", value: type)
            request.body = .bytes(ByteBuffer(string: body))
            return Int(try await HTTPClient.shared.execute(request, timeout: .seconds(60)).status.code)
        }

        let data = Data("<antrag/>".utf8), pdf = Data("%PDF-1.7 Nachweis".utf8)
        let attachmentID = UUID().uuidString.lowercased()
        /// Creates a submission announcing one attachment; submits data, metadata listing `listedHash` for it.
        func submission(upload body: Bool, listedHash: String) async throws -> (status: Int, caseID: String, tag: String?) {
            let created = try await client.send(.POST, "/v1/submissions", json: [
                "destinationId": destinationID, "announcedAttachments": [attachmentID], "serviceType": ["name": "Anmeldung"]])
            let id = try #require(created.body["submissionId"] as? String)
            let encrypted = try JWE.encrypt(pdf, for: key.encryptionKey, keyID: kid, contentType: "application/pdf")
            if body {
                #expect(try await upload(id, attachmentID, encrypted, type: "application/pdf") == 415)
                #expect(try await upload(id, UUID().uuidString.lowercased(), encrypted) == 422, "not announced")
                #expect(try await upload(id, attachmentID, encrypted) == 204)
            }
            let metadata = try JSONSerialization.data(withJSONObject: [
                "contentStructure": ["data": ["hash": ["type": "sha512", "content": hex(data)],
                                              "submissionSchema": ["schemaUri": Self.schema, "mimeType": "application/xml"]],
                                     "attachments": [["attachmentId": attachmentID, "hash": ["type": "sha512", "content": listedHash],
                                                      "purpose": "attachment", "mimeType": "application/pdf"]]]])
            let submitted = try await client.send(.PUT, "/v1/submissions/\(id)", json: [
                "encryptedMetadata": try JWE.encrypt(metadata, for: key.encryptionKey, keyID: kid),
                "encryptedData": try JWE.encrypt(data, for: key.encryptionKey, keyID: kid)])
            return (submitted.status, try #require(created.body["caseId"] as? String),
                    body ? try JWE.parts(of: encrypted).authenticationTag : nil)
        }

        #expect(try await submission(upload: false, listedHash: hex(pdf)).status == 422, "an announced attachment missing")
        let good = try await submission(upload: true, listedHash: hex(pdf))
        #expect(good.status == 202)
        let bad = try await submission(upload: true, listedHash: hex(Data("other".utf8)))
        #expect(bad.status == 202)
        let states = await standIn.server.fitConnectSubmissions.map(\.state)
        #expect(states == ["created", "accepted", "rejected"], "the receiver checks each attachment's SHA-512: \(states)")

        let log = try #require(try await client.send(.GET, "/v1/cases/\(good.caseID)/events").body["eventLog"] as? [String])
        let accepts = log.compactMap { token -> [String: Any]? in
            let claims = try? JSONSerialization.jsonObject(with: Base64URL.decode(token.split(separator: ".")[1])!) as? [String: Any]
            return (claims?["events"] as? [String: Any])?.first { $0.key.hasSuffix("/accept-submission") }?.value as? [String: Any]
        }
        let accept = try #require(accepts.first)
        let tags = try #require(accept["authenticationTags"] as? [String: Any])
        #expect((tags["attachments"] as? [String: String])?[attachmentID] == good.tag, "the accept names the attachment's tag")
        try await standIn.stop()
    }
}
