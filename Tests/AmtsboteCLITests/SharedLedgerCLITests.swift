import AmtsboteTestSupport
import PostgresTestSupport
import Foundation
import Testing

/// The commands on a PostgreSQL ledger chosen by `AMTSBOTE_LEDGER_URL` over the embedded default.
@Suite("The CLI on the shared ledger")
struct SharedLedgerCLITests {
    @Test("AMTSBOTE_LEDGER_URL: submit queues, worker --drain delivers, deliveries lists, a resend is a duplicate",
          .enabled(if: PostgresTestDatabase.enabled, Comment(rawValue: PostgresServer.unavailableReason)))
    func submitThenWorker() async throws {
        let database = try await PostgresTestDatabase.create()
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = directory.appendingPathComponent("data").path
        let environment = ["AMTSBOTE_LEDGER_URL": database.configuration.displayURL + "?sslmode=disable",
                           "AMTSBOTE_LEDGER_PASSWORD_FILE": try #require(PostgresServer.passwordFile)]
        let sample = "Samples/valid/wohnsitz-anmeldung-koeln.xml"

        let submitted = try CLI.run(["submit", "--data", data, sample, "Samples/invalid/mit-doctype.xml"], environment: environment)
        #expect(submitted.status == 1, "one rejected: \(submitted.stderr)")
        #expect(submitted.stdout.contains("queued for delivery to gemeinde-05315000-koeln (workers deliver it)"), "\(submitted.stdout)")
        #expect(!FileManager.default.fileExists(atPath: data + "/ledger.sqlite"), "the embedded ledger is not used")
        let spool = (try? FileManager.default.contentsOfDirectory(atPath: data + "/spool")) ?? []
        #expect(spool.isEmpty, "payloads live in the database, not in the spool: \(spool)")

        let worker = try CLI.run(["worker", "--data", data, "--drain"], environment: environment)
        #expect(worker.status == 0, "\(worker.stderr)")
        #expect(worker.stdout.contains("1 delivered"), "\(worker.stdout)")
        let delivered = directory.appendingPathComponent("data/postfach/gemeinde-05315000-koeln/\(SampleSubmissions.koelnUUID).xml")
        #expect(try TransformProcessTests.originalSHA256(ofDelivered: delivered)
                == TransformProcessTests.sha256(TestEnvironment.projectRoot.appendingPathComponent(sample)))

        let again = try CLI.run(["submit", "--data", data, sample], environment: environment)
        #expect(again.status == 0)
        #expect(again.stdout.contains("duplicate of #1"), "\(again.stdout)")
        let listing = try CLI.run(["deliveries", "--data", data], environment: environment)
        #expect(listing.status == 0)
        #expect(listing.stdout.contains("ledger: 1 delivered, 1 duplicate, 1 rejected") ||
                listing.stdout.contains("1 delivered") && listing.stdout.contains("1 duplicate"), "\(listing.stdout)")
        await database.drop()
    }

    @Test("a worker signalled while it still waits for the ledger at start exits 0 (the signal is not lost or fatal)")
    func signalDuringStartUp() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let errors = directory.appendingPathComponent("worker.err")
        // Port 1 on loopback: nothing listens; the worker keeps trying for up to 10 minutes.
        var environment = ProcessInfo.processInfo.environment
        environment["AMTSBOTE_LEDGER_URL"] = "postgres://amtsbote@127.0.0.1:1/amtsbote"
        let child = try Child(CLI.binary.path, ["worker", "--data", directory.path, "--wait-for-ledger", "600",
                                                "--log-level", "warning"],
                              stderr: errors.path, environment: environment)
        try waitUntilSync("the worker waits for the ledger") {
            ((try? String(contentsOf: errors, encoding: .utf8)) ?? "").contains("ledger unreachable; trying again")
        }
        kill(child.pid, SIGTERM)
        child.wait()
        #expect(child.status == 0, "\((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
    }

    @Test("a password inside the configured URL is refused; an unreachable server is exit 6 naming it, not the password")
    func refusals() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let root = TestEnvironment.projectRoot.path
        let config = directory.appendingPathComponent("amtsbote.json")
        try """
            {"format": "amtsbote-config/1", "schemas": "\(root)/Schemas",
             "routing": {"tables": ["\(root)/Samples/routing"]},
             "backends": {"local": {"kind": "filesystem", "directory": "postfach"}},
             "postfaecher": {"default": "local"},
             "ledger": {"postgres": {"url": "postgres://amtsbote:geheim@127.0.0.1:1/amtsbote"}},
             "spool": "spool"}
            """.write(to: config, atomically: true, encoding: .utf8)
        let inURL = try CLI.run(["deliveries", "--config", config.path])
        #expect(inURL.status == 2)
        #expect(inURL.stderr.contains("passwordFile or passwordEnv"), "\(inURL.stderr)")
        #expect(!inURL.stderr.contains("geheim"))

        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let down = try CLI.run(["submit", "--data", directory.path, "Samples/valid/wohnsitz-anmeldung-koeln.xml"],
                               environment: ["AMTSBOTE_LEDGER_URL": "postgres://amtsbote:geheim@127.0.0.1:1/amtsbote"])
        #expect(down.status == 6, "\(down.stderr)")
        #expect(down.stderr.contains("ledger.unavailable") && down.stderr.contains("postgres://amtsbote@127.0.0.1:1/amtsbote"),
                "\(down.stderr)")
        #expect(!down.stderr.contains("geheim"), "never the password")
    }
}
