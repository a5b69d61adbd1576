import AmtsboteTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Postfach
@testable import PostfachHTTP
import PostfachStandIn
import PostfachTesting
import ServiceLifecycle
import Testing

/// The stand-in on a free port of 127.0.0.1, run as a service until stopped.
struct RunningStandIn {
    let server: StandInServer
    let port: Int
    let group: ServiceGroup
    let running: Task<Void, any Error>

    static func start(faults: StandInFaults = StandInFaults(), seed: UInt64 = 1,
                      fitConnect: FITConnectOptions? = nil) async throws -> RunningStandIn {
        let server = try StandInServer(port: 0, faults: faults, keepPayloads: true, seed: seed, fitConnect: fitConnect)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let service = server.service { continuation.yield($0?.port ?? 0) }
        let group = ServiceGroup(configuration: .init(services: [service], logger: .init(label: "test.standin")))
        let running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        return RunningStandIn(server: server, port: await iterator.next() ?? 0, group: group, running: running)
    }

    var template: String { "http://127.0.0.1:\(port)/postfach/{postfach}/{id}" }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

@Suite("http backend")
struct HTTPBackendTests {
    @Test("passes the Postfach conformance suite against the stand-in")
    func conformance() async throws {
        let standIn = try await RunningStandIn.start()
        let backend = try HTTPBackend(configuration: .init(url: standIn.template))
        let received = standIn.server.received
        // A request cancelled after the receiver has it may still be stored: the sender cannot know, and its
        // retry finds the delivery present.
        try await PostfachConformance.check(backend, options: .init(cancelledMayArrive: true)) { postfach, id in
            await received.payload(postfach: postfach, id: id)
        }
        await backend.shutdown()
        try await standIn.stop()
    }

    @Test("sends the idempotency key, the digest and the metadata; PUT 201 new, 200 already present")
    func headers() async throws {
        let standIn = try await RunningStandIn.start()
        let backend = try HTTPBackend(configuration: .init(url: standIn.template))
        let workspace = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: workspace) }
        var delivery = try PostfachConformance.delivery(Data("<antrag>Grüße</antrag>".utf8), id: "h-1", postfach: "p-1", in: workspace)
        delivery.metadata = DeliveryMetadata(submission: 7, schemaId: "wohnsitz.anmeldung-1.0", leikaKey: "99115001000000",
                                             routing: #"{"rule":"ags"}"#, portal: #"{"reference":"Grüße-1 😀"}"#)
        let first = try await backend.deliver(delivery)
        #expect(!first.alreadyPresent)
        #expect(first.location == "http://127.0.0.1:\(standIn.port)/postfach/p-1/h-1")
        let again = try await backend.deliver(delivery)
        #expect(again.alreadyPresent)
        let entry = try #require(await standIn.server.received.all.first)
        #expect(entry.requests == 2 && entry.faults == 0 && entry.digestSent)
        #expect(await standIn.server.received.all.count == 1, "the repeat is recognised, not stored beside the first")
        let metadata = try #require(entry.metadata.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] })
        #expect(metadata["schema"] == "wohnsitz.anmeldung-1.0")
        #expect(metadata["leika"] == "99115001000000")
        #expect(metadata["submission"] == "7")
        #expect(metadata["portal"] == #"{"reference":"Grüße-1 😀"}"#, "non-ASCII travels escaped and arrives whole")
        let fields = HTTPBackend.metadataHeaders(delivery, style: .headers)
        #expect(fields.allSatisfy { $0.1.unicodeScalars.allSatisfy(\.isASCII) }, "\(fields)")
        #expect(fields.first { $0.0 == "Amtsbote-Portal" }?.1.removingPercentEncoding == #"{"reference":"Grüße-1 😀"}"#)
        await backend.shutdown()
        try await standIn.stop()
    }

    @Test("faults: 429 rate-limited with Retry-After, 503 unavailable, a redirect not followed; nothing stored")
    func faults() async throws {
        let workspace = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let delivery = try PostfachConformance.delivery(Data("<a/>".utf8), id: "f-1", postfach: "p-1", in: workspace)
        let cases: [(StandInFaults, PostfachError.Code, Bool)] = [
            (StandInFaults(rateLimited: 1, retryAfterSeconds: 7), .rateLimited, true),
            (StandInFaults(unavailable: 1), .unavailable, true),
            (StandInFaults(redirect: 1), .rejected, false),
        ]
        for (faults, code, retryable) in cases {
            let standIn = try await RunningStandIn.start(faults: faults)
            let backend = try HTTPBackend(configuration: .init(url: standIn.template))
            let error = try await #require(throws: PostfachError.self) { try await backend.deliver(delivery) }
            #expect(error.code == code, "\(error)")
            #expect(error.isRetryable == retryable)
            if code == .rateLimited { #expect(error.retryAfter == .seconds(7)) }
            if code == .rejected { #expect(error.message.contains("redirect")) }
            #expect(await standIn.server.received.all.isEmpty)
            await backend.shutdown()
            try await standIn.stop()
        }
    }

    @Test("a connection closed after the receiver stored the delivery: retried, and then found present")
    func resetAfterStoring() async throws {
        let standIn = try await RunningStandIn.start(faults: StandInFaults(reset: 0.5), seed: 3)
        let backend = try HTTPBackend(configuration: .init(url: standIn.template))
        let workspace = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: workspace) }
        var resets = 0
        for n in 0..<20 {
            let delivery = try PostfachConformance.delivery(Data("<a>\(n)</a>".utf8), id: "r-\(n)", postfach: "p-1", in: workspace)
            var receipt: Receipt?
            while receipt == nil {
                do { receipt = try await backend.deliver(delivery) } catch let error as PostfachError {
                    #expect(error.code == .unavailable, "\(error)")
                    resets += 1
                }
            }
        }
        #expect(resets > 0, "the fault happened")
        let entries = await standIn.server.received.all
        #expect(entries.count == 20)
        #expect(entries.map(\.requests).reduce(0, +) == 20 + resets, "each dropped answer led to exactly one more request")
        #expect(entries.allSatisfy { $0.requests - 1 == $0.faults })
        await backend.shutdown()
        try await standIn.stop()
    }

    @Test("answers map to codes: 401/403 authentication, 4xx rejected with the problem kept, 408/425/5xx retried, 409 by digest")
    func mapping() throws {
        let workspace = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let delivery = try PostfachConformance.delivery(Data("<a/>".utf8), id: "m-1", postfach: "p-1", in: workspace)
        let digest = ContentDigest.sha256(hex: delivery.payloadSHA256)
        func outcome(_ code: Int, _ headers: HTTPHeaders = [:], _ body: String = "", method: HTTPMethod = .PUT) throws -> Receipt {
            try HTTPBackend.outcome(status: HTTPResponseStatus(statusCode: code), headers: headers, body: ByteBuffer(string: body),
                                    delivery: delivery, url: "https://r.example/postfach/p-1/m-1", digest: digest, method: method)
        }
        func code(_ status: Int, _ headers: HTTPHeaders = [:], _ body: String = "") -> PostfachError? {
            do { _ = try outcome(status, headers, body); return nil } catch { return error as? PostfachError }
        }
        #expect(try !outcome(201).alreadyPresent)
        #expect(try outcome(200).alreadyPresent)
        #expect(try !outcome(200, method: .POST).alreadyPresent)
        #expect(try outcome(201, ["Location": "/stored/42"]).location == "https://r.example/stored/42")
        #expect(try outcome(409, ["Content-Digest": digest]).alreadyPresent)
        #expect(code(409, ["Content-Digest": "sha-256=:AAAA:"])?.code == .conflict)
        #expect(code(409)?.code == .conflict)
        for status in [401, 403] { #expect(code(status)?.code == .authenticationFailed) }
        for status in [408, 425, 500, 502, 503, 504] { #expect(code(status)?.isRetryable == true, "\(status)") }
        #expect(code(503, ["Retry-After": "120"])?.retryAfter == .seconds(120))
        let problem = code(422, ["Content-Type": "application/problem+json"],
                           #"{"type":"https://r.example/problems/schema","title":"Unprocessable","status":422,"detail":"unknown schema"}"#)
        #expect(problem?.code == .rejected && problem?.isRetryable == false)
        #expect(problem?.message.contains("detail: unknown schema") == true, "\(problem?.message ?? "")")
        #expect(code(302, ["Location": "https://elsewhere.example/"])?.code == .rejected)
        #expect(code(404)?.code == .rejected)
        #expect(HTTPBackend.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == .zero, "a date in the past: at once")
        #expect(HTTPBackend.parseRetryAfter("soon") == nil)
    }

    @Test("configuration: url template, method, secrets from the environment or a file, never inline")
    func configuration() throws {
        let base = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        try Data("file-password\n".utf8).write(to: base.appendingPathComponent("password"))
        func settings(_ parameters: [String: String]) -> BackendSettings {
            BackendSettings(parameters: parameters, baseDirectory: base, environment: ["RECEIVER_TOKEN": "env-token", "RECEIVER_USER": "amt"])
        }
        let bearer = try HTTPBackend.configuration(from: settings(["url": "https://r.example/p/{postfach}/{id}", "tokenEnv": "RECEIVER_TOKEN",
                                                                   "method": "post", "requestTimeoutSeconds": "30"]))
        guard case .bearer(let token) = bearer.credentials else { Issue.record("no bearer"); return }
        #expect(token == "env-token" && bearer.method == .POST && bearer.requestTimeout == .seconds(30))
        let basic = try HTTPBackend.configuration(from: settings(["url": "https://r.example/{id}", "userEnv": "RECEIVER_USER",
                                                                  "passwordFile": "password"]))
        guard case .basic(let user, let password) = basic.credentials else { Issue.record("no basic"); return }
        #expect(user == "amt" && password == "file-password")
        #expect(throws: PostfachError.self) { try HTTPBackend.configuration(from: settings(["url": "https://r.example/{id}", "token": "inline"])) }
        #expect(throws: PostfachError.self) { try HTTPBackend.configuration(from: settings(["url": "https://r.example/{id}", "method": "PATCH"])) }
        #expect(throws: PostfachError.self) { try HTTPBackend(configuration: .init(url: "ftp://r.example/{id}")) }
        #expect(throws: PostfachError.self) { try HTTPBackend(configuration: .init(url: "https://r.example/no-id")) }
        let cleartext = try #require(throws: PostfachError.self) {
            try HTTPBackend(configuration: .init(url: "http://r.example/{id}", credentials: .bearer(token: "t")))
        }
        #expect(cleartext.message.contains("https only"))
    }
}
