import AmtsboteTestSupport
import Foundation
import Testing

@Suite("amtsbote submit, route, deliveries, retry: the built binary")
struct SubmitTests {
    @Test("the embedded default shows the whole flow: delivered, rejected, unroutable; exit 4")
    func embeddedDefault() throws {
        let data = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let result = try CLI.run(["submit", "--data", data.path, "Samples/"])
        #expect(result.status == 4, "\(result.stderr)")
        #expect(result.stdout.contains("Samples/valid/wohnsitz-anmeldung-koeln.xml: delivered -> gemeinde-05315000-koeln (\(data.path)/postfach/gemeinde-05315000-koeln/3f2b9c1e-8d4a-4e6b-9a7c-1d2e3f4a5b6c.xml)"))
        #expect(result.stdout.contains("Samples/invalid/mit-doctype.xml: rejected: input.doctype-forbidden: line 2, column 38"))
        #expect(result.stdout.contains("Samples/unroutable/wohnsitz-anmeldung-hanau-alter-schluessel.xml: unroutable: route.key-retired"))
        #expect(result.stdout.hasSuffix("16 submissions this run; ledger: 9 rejected, 2 unroutable, 5 delivered\n"))
        let again = try CLI.run(["submit", "--data", data.path, "Samples/valid"])
        #expect(again.status == 0)
        #expect(again.stdout.contains("duplicate of #"))
        #expect(again.stdout.hasSuffix("5 submissions this run; ledger: 9 rejected, 2 unroutable, 5 delivered, 5 duplicate\n"))
    }

    @Test("--dry-run and route --explain decide without delivering or recording")
    func dryRun() throws {
        let data = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let dry = try CLI.run(["submit", "--dry-run", "--data", data.path, "Samples/valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml"])
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("would go to gemeinde-05915000-hamm"))
        #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("ledger.sqlite").path))
        let explain = try CLI.run(["route", "--explain", "--data", data.path,
                                   "Samples/valid/wohnsitz-anmeldung-familie-hanau.xml", "Samples/unroutable/hundesteuer-unbekannte-gemeinde.xml"])
        #expect(explain.status == 4)
        #expect(explain.stdout.contains("would go to land-06-hessen"))
        #expect(explain.stdout.contains("Gemeinde 064150000000 for 99115001001000: no rule"))
        #expect(explain.stdout.contains("Kreis 06415 for *: no rule"))
        #expect(explain.stdout.contains("Land 06 for *: rule at line 11 -> land-06-hessen"))
        #expect(explain.stdout.contains("unroutable: route.key-unknown: AGS 05999999"))
    }

    @Test("a Postfach that cannot take deliveries: retries, dead letter, then `retry` delivers")
    func deadLetterThenRetry() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try CrashTests.configuration(in: directory, retry: #"{"maxAttempts": 3, "initialDelaySeconds": 0.05}"#)
        // The Postfach directory's name is taken by a file: every attempt fails (as a full or broken disk would).
        let blocked = directory.appendingPathComponent("postfach/gemeinde-05315000-koeln")
        try FileManager.default.createDirectory(at: blocked.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("not a directory".utf8).write(to: blocked)
        let failed = try CLI.run(["submit", "--config", config.path, "--wait", "120", "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(failed.status == 5, "\(failed.stdout)\(failed.stderr)")
        #expect(failed.stdout.contains("dead: postfach.unavailable"))
        let listing = try CLI.run(["deliveries", "--config", config.path, "--state", "dead", "--format", "json"])
        let row = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])
        #expect(row["attempts"] as? Int == 3)
        #expect(row["reasonCode"] as? String == "postfach.unavailable")
        // A resend of a dead submission is a duplicate of it, and not a success while the original is undelivered.
        let resend = try CLI.run(["submit", "--config", config.path, "--wait", "0", "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(resend.stdout.contains("duplicate of #1"))
        #expect(resend.status == 5, "\(resend.stdout)")
        try FileManager.default.removeItem(at: blocked)
        let retried = try CLI.run(["retry", "--config", config.path])
        #expect(retried.status == 0, "\(retried.stdout)\(retried.stderr)")
        #expect(retried.stdout.contains("delivered -> gemeinde-05315000-koeln"))
        #expect(FileManager.default.fileExists(atPath: blocked.appendingPathComponent("3f2b9c1e-8d4a-4e6b-9a7c-1d2e3f4a5b6c.xml").path))
    }

    @Test("a Postfach directory without write permission: dead with the reason, delivered once permission is back")
    func permissionDenied() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try CrashTests.configuration(in: directory, retry: #"{"maxAttempts": 2, "initialDelaySeconds": 0.05}"#)
        let inbox = directory.appendingPathComponent("postfach/gemeinde-05315000-koeln")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("postfach/.incoming"),
                                                withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        for path in [directory, directory.appendingPathComponent("postfach"), directory.appendingPathComponent("postfach/.incoming")] {
            chmod(path.path, 0o777)
        }
        chmod(inbox.path, 0o555)
        // Root passes every permission check: run the tool as `nobody` then, so the refusal is the kernel's.
        let asUser = geteuid() == 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : []
        let failed = try CLI.run(["submit", "--config", config.path, "--wait", "60", "Samples/valid/wohnsitz-anmeldung-koeln.xml"],
                                 wrapper: asUser)
        #expect(failed.status == 5, "\(failed.stdout)\(failed.stderr)")
        #expect(failed.stdout.contains("dead: postfach.unavailable"), "\(failed.stdout)")
        let listing = try CLI.run(["deliveries", "--config", config.path, "--state", "dead", "--format", "json"], wrapper: asUser)
        let row = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])
        #expect((row["reason"] as? String)?.contains("Permission denied") == true, "\(row)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("postfach/.incoming").path)
        #expect(leftovers.isEmpty, "\(leftovers)")

        chmod(inbox.path, 0o777)
        let retried = try CLI.run(["retry", "--config", config.path], wrapper: asUser)
        #expect(retried.status == 0, "\(retried.stdout)\(retried.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: inbox.path).filter { $0.hasSuffix(".xml") }.count == 1)
    }

    @Test("configuration errors exit 2 and name the problem", arguments: [
        (#"{"routing": {"tables": ["nowhere.tsv"]}, "backends": {}, "postfaecher": {"default": "x"}, "ledger": "l", "spool": "s"}"#, "nowhere.tsv"),
        (#"{"format": "amtsbote-config/9"}"#, "routing"),
        ("not json", "configuration error"),
    ])
    func configurationErrors(text: String, fragment: String) throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("amtsbote.json")
        try text.write(to: config, atomically: true, encoding: .utf8)
        let result = try CLI.run(["submit", "--config", config.path, "Samples/valid"])
        #expect(result.status == 2)
        #expect(result.stderr.contains(fragment), "\(result.stderr)")
    }
}
