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
        // Köln's Postfach receives the Wohnsitz-Anmeldung in its Meldewesen import format; the others as received.
        let koeln = data.appendingPathComponent("postfach/gemeinde-05315000-koeln/\(SampleSubmissions.koelnUUID).xml")
        #expect(try String(contentsOf: koeln, encoding: .utf8).contains("<mi:meldewesenImport"))
        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: koeln.deletingPathExtension().appendingPathExtension("json")))
        #expect((metadata as? [String: Any])?["transformation"] as? String == "meldewesen-import", "\(metadata)")
        let hamm = data.appendingPathComponent("postfach/gemeinde-05915000-hamm/0b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e.xml")
        #expect(try Data(contentsOf: hamm) == Data(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Samples/valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml")))
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

    @Test("a message id reused: same payload is a duplicate (exit 0), a different payload is kept as a conflict (exit 5)")
    func reusedMessageId() throws {
        let data = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let original = "Samples/valid/wohnsitz-anmeldung-koeln.xml"
        let first = try CLI.run(["submit", "--data", data.path, original])
        #expect(first.status == 0, "\(first.stdout)\(first.stderr)")
        let resend = try CLI.run(["submit", "--data", data.path, original])
        #expect(resend.status == 0, "\(resend.stdout)")
        #expect(resend.stdout.contains("duplicate of #1"), "\(resend.stdout)")

        // Another citizen's application under the same nachrichtenUUID: valid, routable, but not the same bytes.
        let other = data.appendingPathComponent("andere-person.xml")
        try String(contentsOf: TestEnvironment.projectRoot.appendingPathComponent(original), encoding: .utf8)
            .replacingOccurrences(of: "<bas:vorname>Erika</bas:vorname>", with: "<bas:vorname>Erik</bas:vorname>")
            .write(to: other, atomically: true, encoding: .utf8)
        let conflict = try CLI.run(["submit", "--data", data.path, other.path])
        #expect(conflict.status == 5, "never a success: \(conflict.stdout)")
        #expect(conflict.stdout.contains("\(other.path): conflict: ledger.id-conflict: delivery id \(SampleSubmissions.koelnUUID) belongs to #1"),
                "\(conflict.stdout)")
        let listing = try CLI.run(["deliveries", "--data", data.path, "--state", "conflict", "--format", "json"])
        let row = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any], "\(listing.stdout)")
        #expect(row["reasonCode"] as? String == "ledger.id-conflict")
        #expect(row["duplicateOf"] as? Int == 1)
        #expect(row["location"] is NSNull, "a conflict shows no delivery of its own: \(row)")
        // Kept, not delivered: the Postfach still holds the first payload only, and the spool keeps the second.
        let delivered = data.appendingPathComponent("postfach/gemeinde-05315000-koeln/\(SampleSubmissions.koelnUUID).xml")
        let originalSHA256 = try TransformProcessTests.sha256(TestEnvironment.projectRoot.appendingPathComponent(original))
        #expect(try TransformProcessTests.originalSHA256(ofDelivered: delivered) == originalSHA256)
        let id = try #require(row["id"] as? Int)
        #expect(try Data(contentsOf: data.appendingPathComponent("spool/\(id).xml")) == Data(contentsOf: other))
        // `retry` does not deliver it either: it is not a dead letter.
        let retried = try CLI.run(["retry", "--data", data.path, String(id)])
        #expect(retried.status == 2, "\(retried.stdout)")
        #expect(retried.stderr.contains("#\(id) is conflict: only dead or queued submissions are re-queued"), "\(retried.stderr)")
        #expect(try TransformProcessTests.originalSHA256(ofDelivered: delivered) == originalSHA256)
        let unknown = try CLI.run(["retry", "--data", data.path, "999"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("no submission #999 in the ledger"), "\(unknown.stderr)")
    }

    @Test("`deliveries` and `retry` beside a `submit` that is still reading its input leave it alone: delivered")
    func listingBesideSubmit() throws {
        let data = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        let document = try Data(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Samples/valid/wohnsitz-anmeldung-koeln.xml"))
        let (process, input, output) = try CLI.start(["submit", "--data", data.path, "-"])
        // The first half, then wait until the intake is recorded and its spool file open: the submission is in flight.
        input.fileHandleForWriting.write(document.prefix(document.count / 2))
        let spooling = data.appendingPathComponent("spool/.1.xml.tmp")
        try waitUntilSync("the submit spools its input") { FileManager.default.fileExists(atPath: spooling.path) }

        let ledger = data.appendingPathComponent("ledger.sqlite")
        let before = try Data(contentsOf: ledger)
        let listing = try CLI.run(["deliveries", "--data", data.path, "--format", "json"])
        #expect(listing.status == 0, "\(listing.stderr)")
        #expect(listing.stdout.contains(#""state":"received""#), "\(listing.stdout)")
        #expect(try Data(contentsOf: ledger) == before, "deliveries changed the ledger")
        let retry = try CLI.run(["retry", "--data", data.path, "--wait", "0"])
        #expect(retry.status == 0, "\(retry.stdout)\(retry.stderr)")
        #expect(FileManager.default.fileExists(atPath: spooling.path), "retry removed the intake's spool file")

        input.fileHandleForWriting.write(document.dropFirst(document.count / 2))
        try input.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("-: delivered -> gemeinde-05315000-koeln"), "\(text)")
        let delivered = data.appendingPathComponent("postfach/gemeinde-05315000-koeln/\(SampleSubmissions.koelnUUID).xml")
        #expect(try TransformProcessTests.originalSHA256(ofDelivered: delivered) == TransformProcessTests.sha256(document))
    }

    @Test("`deliveries` never changes anything: a missing data folder stays missing")
    func listingChangesNothing() throws {
        let data = try TestEnvironment.temporaryDirectory()
        try FileManager.default.removeItem(at: data)
        let listing = try CLI.run(["deliveries", "--data", data.path])
        #expect(listing.status == 0, "\(listing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: data.path), "deliveries created \(data.path)")
    }

    @Test("purge deletes payloads of finished submissions past retention, keeps the audit rows, and never unfinished work")
    func purge() throws {
        let data = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: data) }
        _ = try CLI.run(["submit", "--data", data.path, "Samples/"])
        let spool = data.appendingPathComponent("spool")
        func payloads() throws -> Set<String> { Set(try FileManager.default.contentsOfDirectory(atPath: spool.path)) }
        let before = try payloads()
        #expect(before.count == 16)

        // The default periods (7 and 30 days): nothing is old enough.
        let nothing = try CLI.run(["purge", "--data", data.path])
        #expect(nothing.status == 0 && nothing.stdout.hasPrefix("0 payload(s) purged"), "\(nothing.stdout)\(nothing.stderr)")
        let dry = try CLI.run(["purge", "--data", data.path, "--older-than", "0s", "--dry-run"])
        #expect(dry.stdout.contains("16 payload(s) would be purged"), "\(dry.stdout)")
        #expect(try payloads() == before, "a dry run changes nothing")

        let delivered = try CLI.run(["purge", "--data", data.path, "--older-than", "0s", "--state", "delivered"])
        #expect(delivered.status == 0)
        #expect(delivered.stdout.contains("5 payload(s) purged"), "\(delivered.stdout)")
        #expect(try payloads().count == 11, "only the delivered payloads are gone")
        let listing = try CLI.run(["deliveries", "--data", data.path, "--state", "delivered", "--format", "json"])
        for line in listing.stdout.split(separator: "\n") {
            let row = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(row["purgedAt"] is String, "marked purged: \(row)")
            #expect(row["location"] is String && row["deliveryId"] is String, "the audit row keeps the receipt: \(row)")
        }
        #expect(try CLI.run(["deliveries", "--data", data.path]).stdout.contains("(payload purged)"))
        let unfinished = try CLI.run(["purge", "--data", data.path, "--state", "queued"])
        #expect(unfinished.status == 2 && unfinished.stderr.contains("unfinished work"), "\(unfinished.stderr)")
        let typo = try CLI.run(["purge", "--data", data.path, "--older-than", "30 days"])
        #expect(typo.status == 2)
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
        (#"{"format": "amtsbote-config/9"}"#, "unknown format 'amtsbote-config/9'"),
        ("not json", "amtsbote.json: not valid JSON"),
        (#"{"routing": {"tables": ["Samples/routing"]}, "backends": {}, "postfaecher": {"default": "x"}, "ledger": "l", "spool": "s", "retyr": {}}"#,
         "amtsbote.json: unknown key 'retyr'"),
        (#"{"routing": {"tables": ["Samples/routing"], "municipality": "m.csv"}, "backends": {}, "postfaecher": {"default": "x"}, "ledger": "l", "spool": "s"}"#,
         "unknown key 'routing.municipality'"),
        (#"{"routing": {"tables": ["Samples/routing"]}, "backends": {}, "postfaecher": {"default": "x"}, "ledger": "l", "spool": "s", "retry": {"maxAttempts": "five"}}"#,
         "amtsbote.json: key 'retry.maxAttempts': expected a number"),
        (#"{"routing": {"tables": ["Samples/routing"]}, "backends": {}, "ledger": "l", "spool": "s"}"#,
         "amtsbote.json: missing key 'postfaecher'"),
        (#"{"routing": {"tables": ["Samples/routing"]}, "backends": {}, "postfaecher": {"default": "x"}, "ledger": "l", "spool": "s", "retention": {"dead": "30 days"}}"#,
         "amtsbote.json: key 'retention.dead': expected a duration such as 7d, 12h or 30m, found '30 days'"),
        (#"{"routing": {"tables": [""# + TestEnvironment.projectRoot.appendingPathComponent("Samples/routing").path
            + #""]}, "backends": {"local": {"kind": "filesystem", "directory": "p", "direcotry": "q"}}, "postfaecher": {"default": "local"}, "ledger": "l", "spool": "s"}"#,
         "key 'backends.local': unknown parameter 'direcotry' for a filesystem backend (known: directory, journal)"),
    ])
    func configurationErrors(text: String, fragment: String) throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("amtsbote.json")
        try text.write(to: config, atomically: true, encoding: .utf8)
        let result = try CLI.run(["submit", "--config", config.path, "Samples/valid"])
        #expect(result.status == 2)
        #expect(result.stderr.contains(fragment), "\(result.stderr)")
        #expect(!result.stderr.contains("DecodingError") && !result.stderr.contains("CodingKeys"), "\(result.stderr)")
    }

    @Test("every pipeline command checks --log-level")
    func logLevelChecked() throws {
        for command in ["submit", "route", "deliveries", "retry"] {
            let result = try CLI.run([command, "--log-level", "loud"] + (command == "submit" || command == "route" ? ["Samples/valid"] : []))
            #expect(result.status == 2, "\(command): \(result.status)")
            #expect(result.stderr.contains("unknown log level 'loud'"), "\(command): \(result.stderr)")
        }
    }

    @Test("run from another folder, the embedded default finds its schemas and routing beside the installation")
    func outsideProjectFolder() throws {
        let elsewhere = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        let sample = TestEnvironment.projectRoot.appendingPathComponent("Samples/valid/wohnsitz-anmeldung-koeln.xml").path
        let result = try Fixtures.shell(["sh", "-c", "cd '\(elsewhere.path)' && '\(CLI.binary.path)' submit '\(sample)'"])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(result.stdout.contains("delivered -> gemeinde-05315000-koeln"), "\(result.stdout)")
        #expect(FileManager.default.fileExists(atPath: elsewhere.appendingPathComponent("amtsbote-data/ledger.sqlite").path))
    }
}
