import AmtsboteTestSupport
import Foundation
import Testing

/// kill -9 at random moments during `amtsbote submit`, restart, and check that nothing was lost or doubled.
@Suite("Crash safety of submit (SIGKILL)")
struct CrashTests {
    /// A configuration over a temporary data folder, with the project's schemas and sample routing; `retry` is
    /// the retry policy's JSON object, if any.
    static func configuration(in directory: URL, retry: String? = nil, ledger: String = "\"ledger.sqlite\"",
                              backend: String = "{\"kind\": \"filesystem\", \"directory\": \"postfach\"}",
                              service: String? = nil) throws -> URL {
        let root = TestEnvironment.projectRoot.path
        let config = """
            {
              "format": "amtsbote-config/1",
              "schemas": "\(root)/Schemas",
              "routing": {
                "tables": ["\(root)/Samples/routing"],
                "municipalities": "\(root)/Samples/routing/gemeinden_ags_ars_2026-04-30.csv",
                "retiredKeys": "\(root)/Samples/routing/ags-retired-since-2011.txt"
              },
              "backends": {"local": \(backend)},
              "postfaecher": {"default": "local"},
              "ledger": \(ledger),\(retry.map { "\n  \"retry\": \($0)," } ?? "")\(service.map { "\n  \"service\": \($0)," } ?? "")
              "spool": "spool"
            }
            """
        let url = directory.appendingPathComponent("amtsbote.json")
        try config.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    @Test("a crash-test child inherits no pipe or socket of the test process")
    func childInheritsNothing() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pipe = Pipe()  // open in this process while the child starts, as another test's pipes would be
        defer { try? pipe.fileHandleForWriting.close() }
        let listing = directory.appendingPathComponent("fds")
        // The shell's descriptors with their targets ("3 -> pipe:[1234]"); the shell itself may hold a copy of its
        // standard input, so what counts is what they point to.
        let child = try Child("/bin/sh", ["-c", "ls -l /proc/$$/fd >&2"], stderr: listing.path)
        child.wait()
        #expect(child.status == 0)
        let inherited = try String(contentsOf: listing, encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("pipe:") || $0.contains("socket:") }
        #expect(inherited.isEmpty, "\(inherited)")
    }

    @Test("submissions killed at random moments and restarted end delivered exactly once, with no partial file")
    func killAndRestart() async throws {
        // Synchronous, on a thread of its own: the kill timing must not wait for a turn on the shared task pool,
        // which other tests keep busy (an async sleep here once resumed only after the whole run had finished), and
        // its waiting must not hold a pool thread the other tests need.
        try await onOwnThread { try Self.killAndRestartBlocking() }
    }

    static func killAndRestartBlocking() throws {
        let environment = ProcessInfo.processInfo.environment
        let count = Int(environment["AMTSBOTE_CRASH_SUBMISSIONS"] ?? "") ?? 1000
        let kills = Int(environment["AMTSBOTE_CRASH_KILLS"] ?? "") ?? 10
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let inbox = directory.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let ids = try SampleSubmissions.write(count: count, into: inbox)
        let config = try Self.configuration(in: directory)
        var generator = SystemRandomNumberGenerator()
        var killed = 0
        var notKilled: [String] = []
        let postfach = directory.appendingPathComponent("postfach/gemeinde-05315000-koeln")
        func deliveredSoFar() -> Int {
            ((try? FileManager.default.contentsOfDirectory(atPath: postfach.path)) ?? []).filter { $0.hasSuffix(".xml") }.count
        }
        for round in 0..<kills {
            // Kill after a random number of new deliveries plus a random few milliseconds, so the kills land in
            // new work (spooling, ledger writes, the delivery itself), not only in resends of what is done.
            let target = deliveredSoFar() + Int.random(in: 1...max(1, count / kills), using: &generator)
            let errors = directory.appendingPathComponent("stderr-\(round).txt")
            let child = try Child(CLI.binary.path, ["submit", "--config", config.path, "--wait", "0", inbox.path],
                                  stderr: errors.path)
            while child.isRunning() && deliveredSoFar() < target { usleep(2_000) }
            usleep(UInt32.random(in: 0...15_000, using: &generator))
            if child.isRunning() {
                child.kill()
                killed += 1
            } else {
                let text = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
                notKilled.append("exit \(child.status ?? -1) after \(deliveredSoFar()) of \(count): \(text.prefix(300))")
                // A run that ends on its own must have ended well; one that failed is a finding, not bad luck.
                #expect(child.status == 0 || child.status == 4 || child.status == 5, "\(notKilled.last ?? "")")
            }
            child.wait()
        }
        // The proof needs kills that landed in new work; a run may still finish first on a loaded machine.
        #expect(killed >= kills / 2, "runs that were not killed: \(notKilled)")
        let final = try CLI.run(["submit", "--config", config.path, "--wait", "0", inbox.path])
        #expect(final.status == 0, "\(final.stderr)")

        // The Postfach: every message exactly once, complete, with its metadata; nothing else.
        let files = try FileManager.default.contentsOfDirectory(atPath: postfach.path)
        let payloads = files.filter { $0.hasSuffix(".xml") }.map { String($0.dropLast(4)) }
        #expect(payloads.count == count)
        #expect(Set(payloads) == Set(ids))
        #expect(files.count == 2 * count, "one .json per .xml and no partial file: \(files.filter { !$0.hasSuffix(".xml") && !$0.hasSuffix(".json") })")
        for (index, id) in ids.enumerated() {
            let expected = try Data(contentsOf: inbox.appendingPathComponent(String(format: "antrag-%05d.xml", index)))
            #expect(try Data(contentsOf: postfach.appendingPathComponent(id + ".xml")) == expected, "\(id)")
        }
        let incoming = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("postfach/.incoming").path)
        #expect(incoming.isEmpty, "temporary files were cleaned up")

        // The ledger agrees: one delivered row per message, every other row a duplicate or an abandoned intake.
        let listing = try CLI.run(["deliveries", "--config", config.path, "--format", "json"])
        let rows = try listing.stdout.split(separator: "\n").map {
            try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let delivered = rows.filter { $0["state"] as? String == "delivered" }
        #expect(delivered.count == count)
        #expect(Set(delivered.compactMap { $0["deliveryId"] as? String }) == Set(ids))
        let others = Set(rows.compactMap { $0["state"] as? String }).subtracting(["delivered"])
        #expect(others.isSubset(of: ["duplicate", "abandoned"]), "\(others)")
        for row in delivered {
            let location = try #require(row["location"] as? String)
            #expect(FileManager.default.fileExists(atPath: location))
        }
    }
}

/// A child process started with posix_spawn and reaped by this test alone, so "still running" is exact. It inherits
/// no descriptor beyond standard input, output and error.
final class Child {
    let pid: pid_t
    private(set) var status: Int32?

    init(_ executable: String, _ arguments: [String], stderr: String, stdout: String = "/dev/null",
         environment: [String: String]? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Nothing else of this test process reaches the child. Other tests start processes at the same time, and
        // Foundation notices that one of them ended when the last copy of a socket it hands to that child closes:
        // a worker inheriting such a copy kept another test's finished process "running" until the worker died.
        Self.closeInheritedDescriptors(&actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        let result = envp.map { envp in
            envp.withUnsafeBufferPointer { posix_spawn(&pid, executable, &actions, nil, argv, $0.baseAddress) }
        } ?? posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EIO) }
        self.pid = pid
    }

    /// Adds "close every descriptor from 3 on" to `actions`: glibc's `posix_spawn_file_actions_addclosefrom_np`
    /// (2.34 and later, not in Swift's Glibc module, so looked up), else one close per descriptor open now.
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, 3)
            return
        }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for fd in open.compactMap({ Int32($0) }) where fd > 2 {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
    }

    /// `true` until the child has exited (reaped here, without blocking).
    func isRunning() -> Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        if result == pid {
            status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : -(raw & 0x7f)
            return false
        }
        return true
    }

    func kill() { _ = Glibc.kill(pid, SIGKILL) }

    /// Whether the child has taken over `signal` (caught or ignored, per /proc/PID/status): before that, during its
    /// start-up, the signal's default action would end it. A test that stops a child by a signal waits for this.
    func handles(_ signal: Int32) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
        let bit = UInt64(1) << UInt64(signal - 1)
        return status.split(separator: "\n").contains { line in
            guard line.hasPrefix("SigCgt:") || line.hasPrefix("SigIgn:"),
                  let mask = UInt64(line.split(separator: "\t").last.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? "",
                                    radix: 16) else { return false }
            return mask & bit != 0
        }
    }

    /// Blocks until the child has exited.
    func wait() {
        guard status == nil else { return }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        status = (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : -(raw & 0x7f)
    }
}
