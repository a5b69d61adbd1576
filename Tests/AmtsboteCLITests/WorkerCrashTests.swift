import AmtsbotePipeline
import AmtsbotePostgres
import AmtsboteTestSupport
import PostgresTestSupport
import Crypto
import Foundation
import Postfach
import Testing

/// Workers sharing one PostgreSQL ledger are killed with SIGKILL at random moments and the database restarts
/// once; afterwards nothing is lost, nothing was stored twice, and ledger and receiver agree.
@Suite("Crash safety of workers on the shared ledger (SIGKILL, database restart)")
struct WorkerCrashTests {
    static let lease = 10.0

    /// A configuration on the given PostgreSQL ledger, with a journaling filesystem backend.
    static func configuration(in directory: URL, ledger: PostgresLedgerConfiguration, passwordFile: String,
                              retry: String) throws -> URL {
        let setting = """
            {"postgres": {"url": "\(ledger.displayURL)?sslmode=disable", "passwordFile": "\(passwordFile)"}}
            """
        return try CrashTests.configuration(in: directory, retry: retry, ledger: setting,
                                            backend: #"{"kind": "filesystem", "directory": "postfach", "journal": "journal.txt"}"#)
    }

    /// Runs `scripts/postgres` with `arguments`; its exit status.
    static func postgresScript(_ arguments: [String], log: URL) throws -> Int32? {
        // posix_spawn and waitpid (Foundation's Process can miss the exit of a script whose server lives on).
        let child = try Child("/bin/bash", [TestEnvironment.projectRoot.appendingPathComponent("scripts/postgres").path]
                                  + arguments, stderr: log.path)
        child.wait()
        return child.status
    }

    /// Journal lines: (id, sha256, outcome).
    static func journal(_ url: URL) -> [(id: String, sha: String, outcome: String)] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            return fields.count == 5 ? (fields[2], fields[3], fields[4]) : nil
        }
    }

    @Test("4 workers, kill -9 at random moments, one database restart: 0 lost, 0 stored twice, ledger and receiver agree",
          .enabled(if: PostgresTestDatabase.enabled, Comment(rawValue: PostgresServer.unavailableReason)))
    func killWorkers() async throws {
        let environment = ProcessInfo.processInfo.environment
        let count = Int(environment["AMTSBOTE_WORKER_CRASH_SUBMISSIONS"] ?? "") ?? 2000
        let kills = Int(environment["AMTSBOTE_WORKER_CRASH_KILLS"] ?? "") ?? 5
        // A cluster of its own: the restart below must not disturb the other tests that use the shared one.
        let directory = try TestEnvironment.temporaryDirectory()
        let serverDirectory = directory.appendingPathComponent("postgres").path
        let sharedURL = try #require(PostgresServer.url, "\(PostgresServer.unavailableReason)")
        let port = (URLComponents(string: sharedURL)?.port ?? 55433) + 100
        #expect(try Self.postgresScript(["start", serverDirectory, "\(port)"], log: directory.appendingPathComponent("start.txt")) == 0,
                "a private cluster starts")
        defer {
            _ = try? Self.postgresScript(["clean", serverDirectory], log: directory.appendingPathComponent("clean.txt"))
            try? FileManager.default.removeItem(at: directory)
        }
        let passwordFile = serverDirectory + "/password"
        let password = try String(contentsOfFile: passwordFile, encoding: .utf8).trimmingCharacters(in: .newlines)
        let server = try PostgresLedgerConfiguration(url: "postgres://amtsbote@127.0.0.1:\(port)/postgres?sslmode=disable",
                                                     password: password)
        let inbox = directory.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        let ids = try SampleSubmissions.write(count: count, into: inbox)
        let config = try Self.configuration(in: directory, ledger: server, passwordFile: passwordFile, retry: """
            {"maxAttempts": 1000, "initialDelaySeconds": 0.05, "maxDelaySeconds": 1, "attemptTimeoutSeconds": 60,
             "leaseSeconds": \(Self.lease), "heartbeatSeconds": 2}
            """)
        let journalURL = directory.appendingPathComponent("journal.txt")

        // Intake records and queues; it delivers nothing itself on a shared ledger.
        let intake = try CLI.run(["submit", "--config", config.path, "--format", "json", inbox.path])
        #expect(intake.status == 0, "\(intake.stderr)")
        let ledger = try await PostgresLedger.open(server)
        #expect(try await ledger.counts() == [.queued: count])

        var generator = SystemRandomNumberGenerator()
        var workers: [Child] = []
        func startWorker(_ n: Int) throws -> Child {
            try Child(CLI.binary.path, ["worker", "--config", config.path, "--concurrency", "4", "--poll", "0.5"],
                      stderr: directory.appendingPathComponent("worker-\(n).txt").path)
        }
        for n in 0..<4 { workers.append(try startWorker(n)) }
        @Sendable func stored() -> Int { Self.journal(journalURL).filter { $0.outcome == "stored" }.count }

        var pickups: [Duration] = []
        for round in 0..<kills {
            // After a random number of new deliveries and a few milliseconds, so kills land in every phase.
            let target = min(count - 1, stored() + Int.random(in: 1...max(1, count / (kills + 2)), using: &generator))
            // On a thread of its own: neither starved by other tests' tasks nor blocking the pool they need.
            try await onOwnThread { try waitUntilSync("deliveries go on (round \(round))") { stored() >= target } }
            usleep(UInt32.random(in: 0...15_000, using: &generator))
            let slot = Int.random(in: 0..<workers.count, using: &generator)
            let victim = workers[slot]
            let identity = ProcessIdentity.running(pid: victim.pid)?.description
            victim.kill()
            victim.wait()
            let killedAt = ContinuousClock.now
            workers[slot] = try startWorker(4 + round)
            if round == kills / 2 {
                let restart = try Self.postgresScript(["restart", serverDirectory],
                                                      log: directory.appendingPathComponent("restart.txt"))
                #expect(restart == 0, "the database restarts")
            }
            // The killed worker's leases are picked up by the others (and the new one).
            if let identity {
                try await waitUntil("the killed worker's deliveries are picked up") {
                    (try? await ledger.submissions(states: [.running], limit: nil))?.allSatisfy { $0.owner != identity } ?? false
                }
                pickups.append(ContinuousClock.now - killedAt)
            }
        }
        let guardTime = ContinuousClock.now + .seconds(900)
        while (try? await ledger.counts()) != [.delivered: count] {
            guard ContinuousClock.now < guardTime else { Issue.record("not everything was delivered within 15 minutes"); break }
            try await Task.sleep(for: .milliseconds(200))
        }
        // SIGTERM: each worker finishes what it holds and exits 0. A worker started in the last round may still be
        // starting up (its signal handling not yet installed, as in any process): wait until it handles SIGTERM.
        for worker in workers {
            try await waitUntil("the worker handles SIGTERM") { !worker.isRunning() || worker.handles(SIGTERM) }
        }
        for worker in workers { _ = Glibc.kill(worker.pid, SIGTERM) }
        for worker in workers {
            worker.wait()
            #expect(worker.status == 0, "a worker stopped by SIGTERM exits 0")
        }

        // 0 lost, 0 stored twice, ledger and receiver agree.
        let rows = try await ledger.submissions(states: nil, limit: nil)
        #expect(rows.count == count)
        #expect(rows.allSatisfy { $0.state == .delivered }, "every submission in a final state: delivered")
        let lines = Self.journal(journalURL)
        var storedPerID: [String: Int] = [:]
        for line in lines where line.outcome == "stored" { storedPerID[line.id, default: 0] += 1 }
        #expect(storedPerID.values.allSatisfy { $0 == 1 }, "no effect twice: \(storedPerID.filter { $0.value > 1 })")
        let postfach = directory.appendingPathComponent("postfach/gemeinde-05315000-koeln")
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: postfach.path).filter { $0.hasSuffix(".xml") })
        #expect(files == Set(ids.map { "\($0).xml" }), "every submission arrived, once")
        for row in rows.prefix(200) {
            let id = try #require(row.deliveryId)
            let data = try Data(contentsOf: postfach.appendingPathComponent("\(id).xml"))
            let sha = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
            #expect(sha == row.payloadSHA256, "the receiver holds what the ledger recorded")
        }
        let worst = pickups.max() ?? .zero
        #expect(worst <= .seconds(2 * Self.lease), "expired or orphaned leases picked up within twice the lease: \(pickups)")
        print("worker crash test: \(count) submissions, \(kills) kills, 1 database restart, "
              + "\(lines.count) backend calls, \(storedPerID.count) stored, pickups \(pickups)")
        await ledger.close()
    }
}
