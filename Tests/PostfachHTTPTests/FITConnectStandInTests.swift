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
}
