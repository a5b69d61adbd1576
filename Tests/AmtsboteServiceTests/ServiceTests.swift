import AmtsbotePipeline
@testable import AmtsboteService
import AmtsboteTestSupport
import AsyncHTTPClient
import Foundation
import NIOCore
import Postfach
import Testing

@Suite("amtsbote serve: the intake API on a live server")
struct ServiceTests {
    @Test("a valid submission: 202 with Location and JSON; GET shows it delivered; the portal's metadata reaches the Postfach untouched")
    func validSubmission() async throws {
        let server = try await TestServer()
        let portal = #"{"servicekonto":{"level":"substantial","reference":"SK-1"},"payment":{"reference":"P-9","status":"paid"},"reference":"portal-77"}"#
        let answer = try await server.post(try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml"),
                                           headers: [("Amtsbote-Portal-Metadata", portal)])
        #expect(answer.status == 202, "\(answer.body)")
        let id = try #require(answer.json["id"] as? String)
        #expect(answer.headers.first(name: "Location") == "/v1/submissions/\(id)")
        #expect((answer.json["links"] as? [String: Any])?["self"] as? String == "/v1/submissions/\(id)")
        try await waitUntil("the submission is delivered") {
            try await server.get("/v1/submissions/\(id)").json["status"] as? String == "delivered"
        }
        let status = try await server.get("/v1/submissions/\(id)")
        #expect(status.status == 200)
        #expect(status.json["schema"] as? String == "wohnsitz.anmeldung-1.0")
        #expect(status.json["postfach"] as? String == "gemeinde-05315000-koeln")
        #expect((status.json["receipt"] as? [String: Any])?["deliveryID"] != nil)
        #expect(status.json["attempts"] as? Int == 1)
        // Never payload values: the sample's family name does not appear in the status.
        #expect(!status.body.contains("Mustermann"))
        let stored = await server.backend.contents(of: "gemeinde-05315000-koeln")
        #expect(stored.values.first?.delivery.metadata.portal == portal)
        try await server.stop()
    }

    @Test("?wait=validation: 422 problem+json with the findings when invalid, recorded as rejected; 202 when valid")
    func waitForVerdict() async throws {
        let server = try await TestServer()
        let invalid = try await server.post(try TestServer.sample("invalid/gewerbe-ohne-betrieb.xml"), query: "?wait=validation")
        #expect(invalid.status == 422)
        #expect(invalid.headers.first(name: "Content-Type") == "application/problem+json")
        #expect(invalid.json["type"] as? String == "/v1/problems/schema.element.unexpected")
        #expect(invalid.json["code"] as? String == "schema.element.unexpected")
        #expect(invalid.json["status"] as? Int == 422)
        let findings = try #require(invalid.json["findings"] as? [[String: Any]])
        let error = try #require(findings.first { $0["severity"] as? String == "error" })
        #expect(error["line"] as? Int == 33)
        #expect(error["column"] as? Int == 15)
        #expect(error["path"] as? String == "/gew:gewerbe.anmeldung.0201/gew:inhaber")
        #expect((error["message"] as? String)?.contains("Expected is") == true)
        let id = try #require(invalid.json["id"] as? String)
        let status = try await server.get("/v1/submissions/\(id)")
        #expect(status.json["status"] as? String == "rejected")
        #expect((status.json["reason"] as? [String: Any])?["code"] as? String == "schema.element.unexpected")
        let valid = try await server.post(try TestServer.sample("valid/gewerbe-anmeldung-gmbh-muenchen.xml"),
                                          query: "?wait=validation")
        #expect(valid.status == 202, "\(valid.body)")
        // Without waiting, an invalid one is accepted for the record and its state says rejected.
        let quiet = try await server.post(try TestServer.sample("invalid/gewerbe-ohne-betrieb.xml"))
        #expect(quiet.status == 202)
        #expect(quiet.json["status"] as? String == "rejected")
        // The problem type resolves to its explanation.
        let explained = try await server.get("/v1/problems/schema.element.unexpected")
        #expect(explained.status == 200)
        #expect(explained.json["fix"] != nil)
        try await server.stop()
    }

    @Test("415 for other media types; 400 for a bad metadata header or wait value; 404 for an unknown id")
    func refusals() async throws {
        let server = try await TestServer()
        let sample = try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml")
        let plain = try await server.post(sample, contentType: "text/plain")
        #expect(plain.status == 415)
        #expect(plain.json["code"] as? String == "service.media-type")
        #expect(try await server.post(sample, contentType: "text/xml; charset=utf-8").status == 202)
        let metadata = try await server.post(sample, headers: [("Amtsbote-Portal-Metadata", "[1,2]")])
        #expect(metadata.status == 400)
        #expect(metadata.json["code"] as? String == "service.bad-metadata")
        #expect(try await server.post(sample, query: "?wait=delivery").status == 400)
        let missing = try await server.get("/v1/submissions/999999")
        #expect(missing.status == 404)
        #expect(missing.json["code"] as? String == "service.not-found")
        #expect(try await server.get("/healthz").status == 200)
        #expect(try await server.get("/readyz").status == 200)
        try await server.stop()
    }

    @Test("Idempotency-Key: the same body gets the first answer again, another body 422, a request still running 409")
    func idempotencyKeys() async throws {
        let server = try await TestServer()
        let sample = try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml")
        let first = try await server.post(sample, headers: [("Idempotency-Key", "order-1")])
        #expect(first.status == 202)
        let again = try await server.post(sample, headers: [("Idempotency-Key", "order-1")])
        #expect(again.status == 202)
        #expect(again.body == first.body)
        #expect(again.headers.first(name: "Idempotent-Replayed") == "true")
        let other = try await server.post(try TestServer.sample("valid/wohnsitz-anmeldung-familie-hanau.xml"),
                                          headers: [("Idempotency-Key", "order-1")])
        #expect(other.status == 422)
        #expect(other.json["code"] as? String == "service.idempotency-mismatch")
        // One submission recorded for the three requests.
        #expect(try await server.ledger.submissions(states: nil, limit: nil).count == 1)

        // A request whose body is still arriving holds its key: a second one with the key is 409.
        let (pieces, feed) = AsyncStream.makeStream(of: ByteBuffer.self)
        var slow = HTTPClientRequest(url: server.base + "/v1/submissions")
        slow.method = .POST
        slow.headers.add(name: "Content-Type", value: "application/xml")
        slow.headers.add(name: "Idempotency-Key", value: "order-2")
        slow.body = .stream(pieces, length: .unknown)
        let firstHalf = sample.prefix(100)
        feed.yield(ByteBuffer(data: firstHalf))
        let running = Task { try await server.send(slow) }
        try await waitUntil("the slow request holds its key") {
            try await server.ledger.submissions(states: [.received], limit: nil).count == 1
        }
        let concurrent = try await server.post(sample, headers: [("Idempotency-Key", "order-2")])
        #expect(concurrent.status == 409)
        #expect(concurrent.json["code"] as? String == "service.idempotency-in-flight")
        feed.yield(ByteBuffer(data: sample.dropFirst(100)))
        feed.finish()
        let finished = try await running.value
        #expect(finished.status == 202, "\(finished.body)")
        // Keys belong to one client: bad keys are refused.
        let bad = try await server.post(sample, headers: [("Idempotency-Key", "with space")])
        #expect(bad.status == 400)
        try await server.stop()
    }

    @Test("bearer tokens: none or wrong 401, another client's submission 403, a schema or Postfach not allowed 403")
    func authentication() async throws {
        let server = try await TestServer { configuration in
            configuration.clients = [
                try ServiceClient(name: "portal-a", tokenSHA256: tokenHash("token-a")),
                try ServiceClient(name: "portal-b", tokenSHA256: "sha256:" + tokenHash("token-b"),
                                  schemas: ["gewerbe.anmeldung-1.1"]),
                try ServiceClient(name: "portal-c", tokenSHA256: tokenHash("token-c"),
                                  postfaecher: ["gemeinde-09162000-muenchen"]),
            ]
        }
        let sample = try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml")
        let none = try await server.post(sample)
        #expect(none.status == 401)
        #expect(none.headers.first(name: "WWW-Authenticate")?.hasPrefix("Bearer") == true)
        #expect(none.json["code"] as? String == "service.unauthorized")
        #expect(try await server.post(sample, token: "token-x").status == 401)
        let accepted = try await server.post(sample, token: "token-a")
        #expect(accepted.status == 202)
        let id = try #require(accepted.json["id"] as? String)
        #expect(try await server.get("/v1/submissions/\(id)", token: "token-a").status == 200)
        let foreign = try await server.get("/v1/submissions/\(id)", token: "token-b")
        #expect(foreign.status == 403)
        #expect(foreign.json["code"] as? String == "service.forbidden")
        #expect(try await server.get("/v1/submissions/\(id)").status == 401)
        let schema = try await server.post(sample, token: "token-b")
        #expect(schema.status == 403)
        #expect(schema.json["code"] as? String == "service.schema-forbidden")
        let postfach = try await server.post(sample, token: "token-c")
        #expect(postfach.status == 403)
        #expect(postfach.json["code"] as? String == "service.postfach-forbidden")
        // Refused submissions are kept, never delivered.
        let kept = try await server.ledger.submissions(states: [.rejected], limit: nil)
        #expect(Set(kept.compactMap(\.reasonCode)) == ["service.schema-forbidden", "service.postfach-forbidden"])
        #expect(Set(kept.compactMap(\.client)) == ["portal-b", "portal-c"])
        // Probes need no token.
        #expect(try await server.get("/healthz").status == 200)
        try await server.stop()
    }

    @Test("one log line per request: request id, client, route, status, codes; never a token, header value or payload value")
    func requestLog() async throws {
        let log = CapturedLog()
        let server = try await TestServer(logger: log.logger) { configuration in
            configuration.clients = [try ServiceClient(name: "portal-a", tokenSHA256: tokenHash("secret-token-a"))]
        }
        let portal = #"{"reference":"Aktenzeichen-4711"}"#
        let answer = try await server.post(try TestServer.sample("invalid/gewerbe-ohne-betrieb.xml"), query: "?wait=validation",
                                           token: "secret-token-a", headers: [("Amtsbote-Portal-Metadata", portal)])
        #expect(answer.status == 422)
        _ = try await server.get("/v1/submissions/1", token: "secret-token-a")
        try await server.stop()
        let requests = log.lines.filter { $0.hasPrefix("info request ") }
        #expect(requests.count == 2, "\(log.lines)")
        let post = try #require(requests.first)
        for field in ["client=portal-a", "codes=schema.element.unexpected", "method=POST", "route=/v1/submissions",
                      "status=422", "request="] {
            #expect(post.contains(field), "\(post)")
        }
        let everything = log.lines.joined(separator: "\n")
        for secret in ["secret-token-a", "Aktenzeichen-4711", "Mustermann"] {
            #expect(!everything.contains(secret), "the log carries \(secret)")
        }
    }

    @Test("429 with Retry-After once the queue is deeper than configured")
    func backpressure() async throws {
        let server = try await TestServer(workers: 0) { $0.maxQueueDepth = 2; $0.retryAfterSeconds = 7 }
        let sample = try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml")
        #expect(try await server.post(sample).status == 202)
        #expect(try await server.post(try TestServer.sample("valid/wohnsitz-anmeldung-familie-hanau.xml")).status == 202)
        var refused: TestServer.Answer?
        try await waitUntil("the queue reader sees two queued submissions") {
            let answer = try await server.post(try TestServer.sample("valid/gewerbe-anmeldung-gmbh-muenchen.xml"))
            if answer.status == 429 { refused = answer }
            return answer.status == 429
        }
        #expect(refused?.headers.first(name: "Retry-After") == "7")
        #expect(refused?.json["code"] as? String == "service.busy")
        // The queue per Postfach in the metrics (its values come from queueByPostfach, checked by the ledger
        // conformance suite; the registry is shared by every test server of this process, so only the series here).
        let metrics = try await server.get("/metrics").body
        #expect(metrics.contains(#"amtsbote_postfach_queue{postfach="gemeinde-05315000-koeln",state="queued"}"#), "\(metrics)")
        #expect(metrics.contains(#"amtsbote_postfach_oldest_due_seconds{postfach="gemeinde-05315000-koeln"}"#))
        try await server.stop()
    }

    @Test("/metrics: requests by route and status, verdicts by code, queue depth by state, delivery attempts")
    func metrics() async throws {
        let server = try await TestServer()
        let answer = try await server.post(try TestServer.sample("valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml"))
        let id = try #require(answer.json["id"] as? String)
        try await waitUntil("the submission is delivered") {
            try await server.get("/v1/submissions/\(id)").json["status"] as? String == "delivered"
        }
        let text = try await server.get("/metrics").body
        #expect(text.contains(#"amtsbote_http_requests_total{route="/v1/submissions",method="POST",status="202"}"#))
        #expect(text.contains(#"amtsbote_verdicts_total{code="valid"}"#))
        #expect(text.contains(#"amtsbote_queue_depth{state="queued"}"#))
        #expect(text.contains(#"amtsbote_delivery_attempts_total{outcome="delivered"}"#))
        #expect(text.contains("amtsbote_delivery_duration_seconds_bucket"))
        try await server.stop()
    }
}
