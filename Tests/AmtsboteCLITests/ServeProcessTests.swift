import AmtsbotePipeline
import AmtsboteTestSupport
import Foundation
import Testing

/// `amtsbote serve` as its own process: SIGTERM with uploads in flight, kill -9 during uploads, a 2 GiB upload.
@Suite("amtsbote serve as a process (SIGTERM drain, kill -9, a 2 GiB upload)")
struct ServeProcessTests {
    /// A server process over a configuration in `directory`, and the port it listens on.
    struct Server {
        let child: Child
        let port: Int
        let directory: URL

        static func start(in directory: URL, service: String = #"{"listen": "127.0.0.1:0", "workers": 2}"#) throws -> Server {
            let config = try CrashTests.configuration(in: directory, service: service)
            let out = directory.appendingPathComponent("serve.out")
            let child = try Child(CLI.binary.path, ["serve", "--config", config.path, "--log-level", "warning"],
                                  stderr: directory.appendingPathComponent("serve.err").path, stdout: out.path)
            var port = 0
            try waitUntilSync("the server listens") {
                guard child.isRunning() else { throw ServerExited(log: (try? String(contentsOf: directory.appendingPathComponent("serve.err"), encoding: .utf8)) ?? "") }
                let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
                guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("serve: api listening on ") }),
                      let number = line.split(separator: ":").last.flatMap({ Int($0) }) else { return false }
                port = number
                return true
            }
            return Server(child: child, port: port, directory: directory)
        }

        /// The state of a submission as `GET /v1/submissions/{id}` tells it (nil: no answer).
        func status(of id: String) -> String? {
            guard let connection = try? RawConnection(port: port) else { return nil }
            connection.send("GET /v1/submissions/\(id) HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            guard let answer = try? connection.readToEnd(),
                  let range = answer.range(of: #""status":"[a-z]+""#, options: .regularExpression) else { return nil }
            return String(answer[range].dropFirst(10).dropLast())
        }

        /// The ledger, read-only (the server writes it).
        func rows() async throws -> [Submission] {
            let ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path, readOnly: true)
            defer { Task { await ledger.close() } }
            return try await ledger.submissions(states: nil, limit: nil)
        }
    }

    struct ServerExited: Error, CustomStringConvertible {
        let log: String
        var description: String { "the server exited: \(log)" }
    }

    /// A sample with a fresh message id, so every upload is its own submission.
    static func uniqueSubmission() throws -> Data {
        let text = try String(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Samples/valid/wohnsitz-anmeldung-koeln.xml"),
                              encoding: .utf8)
        return Data(text.replacingOccurrences(of: "3f2b9c1e-8d4a-4e6b-9a7c-1d2e3f4a5b6c", with: UUID().uuidString.lowercased()).utf8)
    }

    static func head(_ length: Int) -> String {
        "POST /v1/submissions HTTP/1.1\r\nHost: test\r\nContent-Type: application/xml\r\nContent-Length: \(length)\r\n"
            + "Connection: close\r\n\r\n"
    }

    /// The status code and the `id` of an answer.
    static func parse(_ answer: String) -> (status: Int, id: String?) {
        let status = answer.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
        let id = answer.range(of: #""id":"[0-9]+""#, options: .regularExpression).map {
            String(answer[$0].dropFirst(6).dropLast())
        }
        return (status, id)
    }

    @Test("SIGTERM with uploads in flight: no new connections, the uploads finish with 202, exit 0, nothing lost")
    func drainOnSigterm() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // Half-sent uploads wait while the test checks and signals: no idle timeout may end them meanwhile.
        let server = try Server.start(in: directory, service: #"{"listen": "127.0.0.1:0", "workers": 2, "idleTimeoutSeconds": 600}"#)
        let bodies = try (0..<3).map { _ in try Self.uniqueSubmission() }
        let connections = try bodies.map { body -> RawConnection in
            let connection = try RawConnection(port: server.port)
            connection.send(Self.head(body.count))
            connection.send(body.prefix(body.count / 2))
            return connection
        }
        // The server itself says when all three are recorded (reading its ledger beside it would take locks).
        try waitUntilSync("the three uploads are under way") {
            (1...3).allSatisfy { server.status(of: String($0)) == "received" }
        }
        kill(server.child.pid, SIGTERM)
        try waitUntilSync("the listener is closed") { (try? RawConnection(port: server.port)) == nil }
        var ids: [String] = []
        for (connection, body) in zip(connections, bodies) {
            connection.send(body.dropFirst(body.count / 2))
            let answer = Self.parse(try connection.readToEnd())
            #expect(answer.status == 202)
            if let id = answer.id { ids.append(id) }
        }
        server.child.wait()
        #expect(server.child.status == 0)
        let rows = try await server.rows()
        #expect(rows.count == 3)
        #expect(rows.allSatisfy { [.queued, .delivered].contains($0.state) }, "\(rows.map(\.state))")
        #expect(Set(ids) == Set(rows.compactMap { $0.id.map(String.init) }))
    }

    @Test("kill -9 during uploads: every submission answered 202 is delivered once after a restart; nothing half-received is delivered")
    func killDuringUploads() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try Server.start(in: directory)
        // One upload left half-sent, then uploads one after another until enough were accepted.
        let partial = try RawConnection(port: server.port)
        let half = try Self.uniqueSubmission()
        partial.send(Self.head(half.count))
        partial.send(half.prefix(half.count / 2))
        var accepted: [String] = []
        while accepted.count < 12 {
            let body = try Self.uniqueSubmission()
            let connection = try RawConnection(port: server.port)
            connection.send(Self.head(body.count) )
            connection.send(body)
            let answer = Self.parse(try connection.readToEnd())
            if answer.status == 202, let id = answer.id { accepted.append(id) }
        }
        // One more upload under way when the process dies.
        let last = try Self.uniqueSubmission()
        let cut = try RawConnection(port: server.port)
        cut.send(Self.head(last.count))
        cut.send(last.prefix(last.count - 10))
        server.child.kill()
        server.child.wait()

        let restarted = try Server.start(in: directory)
        try waitUntilSync("every accepted submission is delivered") {
            accepted.allSatisfy { restarted.status(of: $0) == "delivered" }
        }
        kill(restarted.child.pid, SIGTERM)
        restarted.child.wait()
        #expect(restarted.child.status == 0)
        let rows = try await restarted.rows()
        let delivered = rows.filter { $0.state == .delivered }
        let files = try FileManager.default.subpathsOfDirectory(atPath: directory.appendingPathComponent("postfach").path)
            .filter { $0.hasSuffix(".xml") && !$0.hasPrefix(".") }
        #expect(files.count == delivered.count, "\(files.count) files, \(delivered.count) delivered rows")
        for row in rows where row.state == .abandoned {
            #expect(!files.contains { $0.hasSuffix("/\(row.deliveryId ?? "none").xml") })
        }
        #expect(rows.contains { $0.state == .abandoned && $0.reasonCode == "intake.interrupted" })
    }

    @Test("a 2 GiB chunked upload is cut at the limit; the server's memory does not grow with it")
    func twoGibibytes() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try Server.start(in: directory)
        let before = try Self.peakResidentKiB(server.child.pid)
        let connection = try RawConnection(port: server.port)
        connection.send("POST /v1/submissions HTTP/1.1\r\nHost: test\r\nContent-Type: application/xml\r\n"
                        + "Transfer-Encoding: chunked\r\n\r\n")
        let chunk = Data(repeating: UInt8(ascii: "a"), count: 1 << 20).chunked()
        var sent = 0
        connection.send(Data("<a>".utf8).chunked())
        while sent < 2 << 30 && !connection.readable && connection.send(chunk) { sent += 1 << 20 }
        let answer = try connection.readToEnd()
        let after = try Self.peakResidentKiB(server.child.pid)
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
        #expect(sent < 200 << 20, "sent \(sent >> 20) MiB before the cut (limit 100 MiB)")
        print("serve: 2 GiB upload cut after \(sent >> 20) MiB; peak RSS \(before / 1024) MiB before, \(after / 1024) MiB after")
        // Sanitizer builds keep freed memory in quarantine and set AMTSBOTE_MEMORY_CEILING_MIB=0: no memory check there.
        if ProcessInfo.processInfo.environment["AMTSBOTE_MEMORY_CEILING_MIB"] != "0" {
            #expect(after - before < 16 * 1024, "peak RSS grew from \(before) KiB to \(after) KiB")
        }
        kill(server.child.pid, SIGTERM)
        server.child.wait()
        #expect(server.child.status == 0)
    }

    @Test("TLS files that cannot be read, unknown tls keys, certificate clients without authorities, an in-memory payload limit out of range: exit 2, naming the file or key")
    func tlsConfigurationErrors() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let routing = TestEnvironment.projectRoot.appendingPathComponent("Samples/routing").path
        let fingerprint = String(repeating: "ab", count: 32)
        let cases = [
            (#"{"tls": {"certificate": "tls/server.pem", "privateKey": "tls/key.pem"}}"#,
             directory.appendingPathComponent("tls/server.pem").path + ": cannot read the certificate chain"),
            (#"{"tls": {"certificate": "a.pem", "privateKey": "b.pem", "clientCA": "c.pem"}}"#,
             "unknown key 'service.tls.clientCA'"),
            (#"{"clients": {"portal-a": {"certificateSHA256": [""# + fingerprint + #""]}}}"#,
             "service.tls.clientCertificateAuthorities names no authority"),
            (#"{"clients": {"portal-a": {"schemas": ["x"]}}}"#, "client 'portal-a' needs tokenSHA256, certificateSHA256 or both"),
            (#"{"payloadInMemoryBytes": 300000}"#, "service.payloadInMemoryBytes must be between 0 and 262144, not 300000"),
        ]
        for (service, fragment) in cases {
            let config = directory.appendingPathComponent("amtsbote.json")
            try (#"{"routing": {"tables": [""# + routing + #""]}, "backends": {"local": {"kind": "filesystem", "directory": "p"}}, "#
                 + #""postfaecher": {"default": "local"}, "ledger": "l.sqlite", "spool": "s", "service": "# + service + "}")
                .write(to: config, atomically: true, encoding: .utf8)
            // A configuration that wrongly passed would serve until the timeout: 124 instead of a hang.
            let result = try CLI.run(["serve", "--config", config.path, "--listen", "127.0.0.1:0"], wrapper: ["timeout", "120"])
            #expect(result.status == 2, "\(service): \(result.status) \(result.stderr)")
            #expect(result.stderr.contains(fragment), "\(result.stderr)")
        }
    }

    /// VmHWM of a process, in KiB.
    static func peakResidentKiB(_ pid: pid_t) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let value = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) })
        else { throw POSIXError(.EIO) }
        return value
    }
}
