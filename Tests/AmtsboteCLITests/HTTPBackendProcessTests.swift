import AmtsboteTestSupport
import Foundation
import Testing

/// The http backend as the README shows it: `amtsbote-testserver` as a process, `amtsbote submit` with the sample
/// configuration Samples/config/http-backend.json (its port and data folder moved into a temporary folder).
@Suite("amtsbote submit to amtsbote-testserver over HTTP")
struct HTTPBackendProcessTests {
    static var testServerBinary: URL { CLI.binary.deletingLastPathComponent().appendingPathComponent("amtsbote-testserver") }

    /// `amtsbote-testserver` on a free port of 127.0.0.1 as its own process, and the port it listens on.
    static func startStandIn(_ arguments: [String], in directory: URL, environment: [String: String]? = nil) throws -> (Child, Int) {
        let out = directory.appendingPathComponent("testserver.out")
        let server = try Child(testServerBinary.path, ["--listen", "127.0.0.1:0"] + arguments,
                               stderr: directory.appendingPathComponent("testserver.err").path, stdout: out.path,
                               environment: environment)
        var port = 0
        try waitUntilSync("the stand-in listens") {
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("testserver: listening on ") }),
                  let number = line.split(separator: ":").last.flatMap({ Int($0) }) else { return false }
            port = number
            return true
        }
        return (server, port)
    }

    /// A JSON array the stand-in lists at `path`.
    static func received(_ path: String, port: Int) throws -> [[String: Any]] {
        let connection = try RawConnection(port: port)
        connection.send("GET \(path) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        let answer = try connection.readToEnd()
        let body = try #require(answer.range(of: "\r\n\r\n").map { String(answer[$0.upperBound...]) })
        return try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]], "\(answer)")
    }

    @Test("the sample configuration delivers every valid sample to the stand-in, once, with a token from the environment")
    func sampleConfiguration() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (server, port) = try Self.startStandIn(["--reset", "0.2", "--seed", "7"], in: directory)
        defer { kill(server.pid, SIGTERM); server.wait() }

        // The sample as shipped, with paths made absolute and the stand-in's port.
        let samples = TestEnvironment.projectRoot.appendingPathComponent("Samples/config")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: samples.appendingPathComponent("http-backend.json"))) as? [String: Any])
        func absolute(_ path: String) -> String { samples.appendingPathComponent(path).standardizedFileURL.path }
        config["schemas"] = absolute(config["schemas"] as! String)
        var routing = config["routing"] as! [String: Any]
        routing["tables"] = (routing["tables"] as! [String]).map(absolute)
        routing["municipalities"] = absolute(routing["municipalities"] as! String)
        routing["retiredKeys"] = absolute(routing["retiredKeys"] as! String)
        config["routing"] = routing
        var receiver = (config["backends"] as! [String: [String: Any]])["receiver"]!
        receiver["url"] = (receiver["url"] as! String).replacingOccurrences(of: ":9090/", with: ":\(port)/")
        config["backends"] = ["receiver": receiver]
        config["ledger"] = directory.appendingPathComponent("ledger.sqlite").path
        config["spool"] = directory.appendingPathComponent("spool").path
        config["retry"] = ["maxAttempts": 20, "initialDelaySeconds": 0.01, "maxDelaySeconds": 0.1]
        let file = directory.appendingPathComponent("http-backend.json")
        try JSONSerialization.data(withJSONObject: config).write(to: file)

        let valid = try FileManager.default.contentsOfDirectory(atPath: TestEnvironment.projectRoot.appendingPathComponent("Samples/valid").path)
            .filter { $0.hasSuffix(".xml") }
        let result = try CLI.run(["submit", "--config", file.path, "Samples/valid"],
                                 environment: ["AMTSBOTE_RECEIVER_TOKEN": "anything"], wrapper: ["timeout", "300"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.components(separatedBy: ": delivered -> ").count - 1 == valid.count, "\(result.stdout)")

        let received = try Self.received("/_received", port: port)
        #expect(received.count == valid.count)
        #expect(received.allSatisfy { $0["digestSent"] as? Bool == true })
        #expect(received.allSatisfy { ($0["requests"] as? Int ?? 0) - 1 <= ($0["faults"] as? Int ?? 0) },
                "a request repeated only after an injected fault: \(received)")

        // Without the token's variable the configuration is refused before anything is recorded.
        let missing = try CLI.run(["submit", "--config", file.path, "Samples/valid"], wrapper: ["timeout", "300"])
        #expect(missing.status == 2, "\(missing.stderr)")
        #expect(missing.stderr.contains("AMTSBOTE_RECEIVER_TOKEN"), "\(missing.stderr)")
    }
}

/// The fit-connect backend as the README shows it: `amtsbote-testserver --fit-connect` as a process and
/// `amtsbote submit` with Samples/config/fit-connect-backend.json.
@Suite("amtsbote submit to amtsbote-testserver's FIT-Connect subset")
struct FITConnectProcessTests {
    /// `amtsbote-testserver --fit-connect` taking the project's three schemas, with the client secret `s3cret`.
    static func startStandIn(in directory: URL) throws -> (Child, Int) {
        let schemas = ["wohnsitz.anmeldung-1.0", "gewerbe.anmeldung-1.1", "hundesteuer.anmeldung-1.0"]
            .flatMap { ["--fit-schema", "urn:amtsbote:schema:\($0)"] }
        return try HTTPBackendProcessTests.startStandIn(["--fit-connect"] + schemas, in: directory,
                                                        environment: ["AMTSBOTE_FIT_CONNECT_SECRET": "s3cret"])
    }

    /// Samples/config/fit-connect-backend.json as shipped, with the stand-in's port, absolute paths, and the
    /// ledger and spool in `directory`.
    static func configuration(port: Int, in directory: URL) throws -> URL {
        let samples = TestEnvironment.projectRoot.appendingPathComponent("Samples/config")
        let text = try String(contentsOf: samples.appendingPathComponent("fit-connect-backend.json"), encoding: .utf8)
            .replacingOccurrences(of: "127.0.0.1:9091", with: "127.0.0.1:\(port)")
            .replacingOccurrences(of: "\"../../amtsbote-data", with: "\"" + directory.path)
            .replacingOccurrences(of: "\"../", with: "\"" + samples.path + "/../")
            // The receiver's answers are asked for at once rather than five minutes after each delivery.
            .replacingOccurrences(of: "\"retry\": {", with: "\"retry\": {\"confirmationCheckSeconds\": 0, ")
        let file = directory.appendingPathComponent("fit-connect.json")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    /// `GET /_received/fit-connect`.
    static func received(port: Int) throws -> [[String: Any]] {
        try HTTPBackendProcessTests.received("/_received/fit-connect", port: port)
    }

    @Test("the sample configuration submits every valid sample once; the stand-in accepts each")
    func sampleConfiguration() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (server, port) = try Self.startStandIn(in: directory)
        defer { kill(server.pid, SIGTERM); server.wait() }
        let file = try Self.configuration(port: port, in: directory)

        let valid = try FileManager.default.contentsOfDirectory(atPath: TestEnvironment.projectRoot.appendingPathComponent("Samples/valid").path)
            .filter { $0.hasSuffix(".xml") }
        let result = try CLI.run(["submit", "--config", file.path, "Samples/valid"],
                                 environment: ["AMTSBOTE_FIT_CONNECT_SECRET": "s3cret"], wrapper: ["timeout", "300"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.components(separatedBy: ": delivered -> ").count - 1 == valid.count, "\(result.stdout)")
        let received = try Self.received(port: port)
        #expect(received.count == valid.count)
        #expect(received.allSatisfy { $0["state"] as? String == "accepted" && $0["submitRequests"] as? Int == 1 }, "\(received)")
        #expect(result.stdout.components(separatedBy: "awaiting the receiver's answer").count - 1 == valid.count, "\(result.stdout)")

        // A draining worker asks for the receivers' answers before it ends; each accept is verified and recorded.
        let worker = try CLI.run(["worker", "--config", file.path, "--drain"],
                                 environment: ["AMTSBOTE_FIT_CONNECT_SECRET": "s3cret"], wrapper: ["timeout", "300"])
        #expect(worker.status == 0, "\(worker.stdout)\(worker.stderr)")
        let listed = try CLI.run(["deliveries", "--config", file.path, "--format", "json"])
        let records = listed.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(records.count == valid.count && records.allSatisfy { $0["confirmation"] as? String == "accepted" }, "\(listed.stdout)")

        // A wrong secret: the token endpoint refuses it, and the delivery ends as an authentication failure.
        let inbox = directory.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try SampleSubmissions.write(count: 1, into: inbox)
        let refused = try CLI.run(["submit", "--config", file.path, inbox.path],
                                  environment: ["AMTSBOTE_FIT_CONNECT_SECRET": "wrong"], wrapper: ["timeout", "300"])
        #expect(refused.stdout.contains("postfach.authentication-failed"), "\(refused.stdout)")
    }

    @Test("kill -9 between create and submit: after the restart one submission at FIT-Connect, submitted once")
    func killBetweenCreateAndSubmit() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (server, port) = try Self.startStandIn(in: directory)
        defer { kill(server.pid, SIGTERM); server.wait() }
        let file = try Self.configuration(port: port, in: directory)
        let inbox = directory.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try SampleSubmissions.write(count: 1, into: inbox)

        // The hook kills the process once the submission is created and recorded, before it is submitted.
        let killed = try CLI.run(["submit", "--config", file.path, inbox.path],
                                 environment: ["AMTSBOTE_FIT_CONNECT_SECRET": "s3cret", "AMTSBOTE_TEST_KILL_AFTER_FIT_CONNECT_CREATE": "1"],
                                 wrapper: ["timeout", "300"])
        #expect(killed.status != 0, "the process died: \(killed.stdout)")
        var received = try Self.received(port: port)
        #expect(received.count == 1 && received.first?["state"] as? String == "created", "\(received)")

        let resumed = try CLI.run(["retry", "--config", file.path], environment: ["AMTSBOTE_FIT_CONNECT_SECRET": "s3cret"],
                                  wrapper: ["timeout", "300"])
        #expect(resumed.status == 0, "\(resumed.stdout)\(resumed.stderr)")
        received = try Self.received(port: port)
        #expect(received.count == 1, "one submission, not two: \(received)")
        #expect(received.first?["state"] as? String == "accepted" && received.first?["submitRequests"] as? Int == 1, "\(received)")
        let listing = try CLI.run(["deliveries", "--config", file.path], environment: ["AMTSBOTE_FIT_CONNECT_SECRET": "s3cret"])
        #expect(listing.stdout.contains("delivered"), "\(listing.stdout)")
    }
}
