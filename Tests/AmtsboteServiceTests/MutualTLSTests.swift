import AmtsbotePipeline
@testable import AmtsboteService
import AmtsboteTestSupport
import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOSSL
import SwiftASN1
import Testing
import X509

/// HTTPS and client certificates on a live service: a throwaway authority issues the server's certificate (for
/// 127.0.0.1) and the clients' certificates, a second authority the service does not trust issues a stranger's.
@Suite("mutual TLS")
struct MutualTLSTests {
    @Test("a client certificate stands for its client; tokens still work over TLS; a token of another client, an unknown or an untrusted certificate do not")
    func clientCertificates() async throws {
        let pki = try TestPKI()
        let server = try await TestServer { configuration in
            configuration.tls = try pki.serverTLS(require: false)
            configuration.clients = [
                try ServiceClient(name: "portal-a", tokenSHA256: nil, certificateSHA256: [pki.fingerprint(of: "portal-a")]),
                try ServiceClient(name: "portal-b", tokenSHA256: tokenHash("token-b")),
            ]
        }
        let sample = try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml")

        let byCertificate = try await pki.post(sample, to: server, as: "portal-a")
        #expect(byCertificate.status == 202, "\(byCertificate.body)")
        let id = try #require(byCertificate.json["id"] as? String)
        #expect(try await pki.get("/v1/submissions/\(id)", from: server, as: "portal-a").status == 200)
        #expect(try await pki.get("/v1/submissions/\(id)", from: server, token: "token-b").status == 403)
        let recorded = try await server.ledger.submissions(states: nil, limit: nil)
        #expect(recorded.map(\.client) == ["portal-a"])

        #expect(try await pki.post(sample, to: server, token: "token-b").status == 202)
        let none = try await pki.post(sample, to: server)
        #expect(none.status == 401)
        #expect(none.json["code"] as? String == "service.unauthorized")
        // The certificate says portal-a, the token portal-b: neither is believed.
        #expect(try await pki.post(sample, to: server, as: "portal-a", token: "token-b").status == 401)
        // Issued by the trusted authority, but no client names it: as good as no certificate.
        #expect(try await pki.post(sample, to: server, as: "portal-unknown").status == 401)
        #expect(try await pki.post(sample, to: server, as: "portal-unknown", token: "token-b").status == 202)
        // Issued by an authority the service does not trust: the handshake fails.
        await #expect(throws: (any Error).self) { try await pki.post(sample, to: server, as: "stranger") }
        // Plain HTTP on the TLS listener is not answered.
        await #expect(throws: (any Error).self) {
            try await HTTPClient.shared.execute(HTTPClientRequest(url: server.base + "/healthz"), timeout: .seconds(10))
        }
        try await server.stop()
    }

    @Test("requireClientCertificate: no handshake without a trusted client certificate")
    func requiredCertificate() async throws {
        let pki = try TestPKI()
        let server = try await TestServer { configuration in
            configuration.tls = try pki.serverTLS(require: true)
            configuration.clients = [
                try ServiceClient(name: "portal-a", tokenSHA256: tokenHash("token-a"),
                                  certificateSHA256: [pki.fingerprint(of: "portal-a")]),
            ]
        }
        let sample = try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml")
        await #expect(throws: (any Error).self) { try await pki.post(sample, to: server, token: "token-a") }
        await #expect(throws: (any Error).self) { try await pki.get("/healthz", from: server) }
        #expect(try await pki.post(sample, to: server, as: "portal-a").status == 202)
        #expect(try await pki.post(sample, to: server, as: "portal-a", token: "token-a").status == 202)
        try await server.stop()
    }

    @Test("configuration: certificate clients need authorities; unreadable or broken PEM files are named")
    func configurationErrors() throws {
        let pki = try TestPKI()
        var configuration = IntakeServiceConfiguration()
        configuration.clients = [try ServiceClient(name: "portal-a", tokenSHA256: nil,
                                                   certificateSHA256: [pki.fingerprint(of: "portal-a")])]
        #expect(throws: ServiceConfigurationError.self) { try configuration.check() }
        configuration.tls = try pki.serverTLS(require: false)
        try configuration.check()
        #expect(throws: ServiceConfigurationError.self) {
            try ServiceClient(name: "portal-x", tokenSHA256: nil, certificateSHA256: [])
        }
        // The fingerprint as openssl prints it (colons, capitals) is accepted.
        let printed = pki.fingerprint(of: "portal-a").uppercased().enumerated()
            .map { $0.offset > 0 && $0.offset % 2 == 0 ? ":\($0.element)" : "\($0.element)" }.joined()
        #expect(try ServiceClient(name: "portal-a", tokenSHA256: nil, certificateSHA256: [printed]).certificateSHA256
                == configuration.clients[0].certificateSHA256)

        let broken = pki.directory.appendingPathComponent("broken.pem")
        try Data("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".utf8).write(to: broken)
        var tls = try pki.serverTLS(require: false)
        tls.certificateChainFile = broken.path
        let error = try #require(throws: ServiceConfigurationError.self) { try IntakeService.tlsConfiguration(tls) }
        #expect(error.description.contains("broken.pem"))
        tls.certificateChainFile = pki.directory.appendingPathComponent("missing.pem").path
        let missing = try #require(throws: ServiceConfigurationError.self) { try IntakeService.tlsConfiguration(tls) }
        #expect(missing.description.contains("missing.pem"))
    }
}

/// A throwaway public-key infrastructure in a temporary folder: an authority the service trusts (server and client
/// certificates), one it does not (the stranger's), PEM files, and HTTPS clients presenting each certificate.
struct TestPKI {
    let directory: URL
    private let authority: (certificate: Certificate, key: P256.Signing.PrivateKey)
    private let certificates: [String: (certificate: Certificate, key: P256.Signing.PrivateKey)]

    init() throws {
        directory = try TestEnvironment.temporaryDirectory()
        authority = try Self.authority("Amtsbote Test CA")
        let untrusted = try Self.authority("Untrusted CA")
        var certificates: [String: (Certificate, P256.Signing.PrivateKey)] = [:]
        certificates["server"] = try Self.issue("127.0.0.1", by: authority, usage: .serverAuth,
                                                 addresses: [[127, 0, 0, 1]])
        for name in ["portal-a", "portal-unknown"] {
            certificates[name] = try Self.issue(name, by: authority, usage: .clientAuth)
        }
        certificates["stranger"] = try Self.issue("portal-a", by: untrusted, usage: .clientAuth)
        self.certificates = certificates
        try write(authority.certificate, "ca.pem")
        try write(certificates["server"]!.0, "server.pem")
        try Data(certificates["server"]!.1.pemRepresentation.utf8).write(to: directory.appendingPathComponent("server-key.pem"))
    }

    /// The service's TLS settings: its certificate and key, the trusted authority for client certificates.
    func serverTLS(require: Bool) throws -> ServiceTLS {
        ServiceTLS(certificateChainFile: directory.appendingPathComponent("server.pem").path,
                   privateKeyFile: directory.appendingPathComponent("server-key.pem").path,
                   clientCertificateAuthorities: directory.appendingPathComponent("ca.pem").path,
                   requireClientCertificate: require)
    }

    /// SHA-256 of the named certificate's DER, in hex.
    func fingerprint(of name: String) -> String {
        var serializer = DER.Serializer()
        try! serializer.serialize(certificates[name]!.certificate)
        return SHA256.hash(data: serializer.serializedBytes).map { String(format: "%02x", $0) }.joined()
    }

    func post(_ body: Data, to server: TestServer, as name: String? = nil, token: String? = nil) async throws -> TestServer.Answer {
        var request = HTTPClientRequest(url: "https://127.0.0.1:\(server.port)/v1/submissions")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/xml")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.body = .bytes(ByteBuffer(data: body))
        return try await send(request, as: name)
    }

    func get(_ path: String, from server: TestServer, as name: String? = nil, token: String? = nil) async throws -> TestServer.Answer {
        var request = HTTPClientRequest(url: "https://127.0.0.1:\(server.port)\(path)")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        return try await send(request, as: name)
    }

    /// One request on a new client that trusts the test authority and presents the named certificate (none: nil).
    private func send(_ request: HTTPClientRequest, as name: String?) async throws -> TestServer.Answer {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: der(authority.certificate), format: .der)])
        if let name, let (certificate, key) = certificates[name] {
            tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: der(certificate), format: .der))]
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem))
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let response = try await client.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 16 << 20)
            try await client.shutdown()
            return TestServer.Answer(status: Int(response.status.code), headers: response.headers, body: String(buffer: body))
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    private func write(_ certificate: Certificate, _ name: String) throws {
        try Data(certificate.serializeAsPEM().pemString.utf8).write(to: directory.appendingPathComponent(name))
    }

    private static func authority(_ name: String) throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName(name) }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: Date() - 3600, notValidAfter: Date() + 86400, issuer: subject, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                KeyUsage(keyCertSign: true)
            },
            issuerPrivateKey: .init(key))
        return (certificate, key)
    }

    private static func issue(_ name: String, by issuer: (certificate: Certificate, key: P256.Signing.PrivateKey),
                              usage: ExtendedKeyUsage.Usage, addresses: [[UInt8]] = [])
        throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: Date() - 3600, notValidAfter: Date() + 86400, issuer: issuer.certificate.subject,
            subject: try DistinguishedName { CommonName(name) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                KeyUsage(digitalSignature: true)
                try ExtendedKeyUsage([usage])
                if !addresses.isEmpty {
                    SubjectAlternativeNames(addresses.map { GeneralName.ipAddress(ASN1OctetString(contentBytes: ArraySlice($0))) })
                }
            },
            issuerPrivateKey: .init(issuer.key))
        return (certificate, key)
    }
}
