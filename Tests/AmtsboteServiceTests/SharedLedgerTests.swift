import AmtsbotePipeline
import AmtsbotePostgres
@testable import AmtsboteService
import AmtsboteTestSupport
import Foundation
import Postfach
import PostgresTestSupport
import Testing

@Suite("Several service instances on one PostgreSQL ledger")
struct SharedLedgerTests {
    @Test("a submission taken by one instance is read, replayed and delivered through the other",
          .enabled(if: PostgresTestDatabase.enabled, Comment(rawValue: PostgresServer.unavailableReason)))
    func twoInstances() async throws {
        let database = try await PostgresTestDatabase.create()
        let clients = [try ServiceClient(name: "portal-a", tokenSHA256: tokenHash("token-a")),
                       try ServiceClient(name: "portal-b", tokenSHA256: tokenHash("token-b"))]
        let backend = InMemoryBackend()
        // One instance takes submissions only; the other also delivers (as `--workers 0` beside a worker).
        let intake = try await TestServer(workers: 0, postgres: try await database.open(), backend: backend) {
            $0.clients = clients
        }
        let delivering = try await TestServer(workers: 2, postgres: try await database.open(), backend: backend) {
            $0.clients = clients
        }
        let sample = try TestServer.sample("valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml")
        let first = try await intake.post(sample, token: "token-a", headers: [("Idempotency-Key", "shared-1")])
        #expect(first.status == 202, "\(first.body)")
        let id = try #require(first.json["id"] as? String)
        // The key holds across instances: the same body gets the first answer, another body 422.
        let again = try await delivering.post(sample, token: "token-a", headers: [("Idempotency-Key", "shared-1")])
        #expect(again.status == 202)
        #expect(again.body == first.body)
        let other = try await delivering.post(try TestServer.sample("valid/wohnsitz-anmeldung-koeln.xml"), token: "token-a",
                                              headers: [("Idempotency-Key", "shared-1")])
        #expect(other.status == 422)
        // Read through the other instance; delivered by its workers; another client may not read it.
        try await waitUntil("the other instance delivers it") {
            try await delivering.get("/v1/submissions/\(id)", token: "token-a").json["status"] as? String == "delivered"
        }
        #expect(try await intake.get("/v1/submissions/\(id)", token: "token-b").status == 403)
        let postfach = try #require(try await intake.get("/v1/submissions/\(id)", token: "token-a").json["postfach"] as? String)
        let stored = await backend.contents(of: postfach)
        #expect(stored.count == 1, "\(stored.keys)")
        try await intake.stop()
        try await delivering.stop()
        await database.drop()
    }
}
