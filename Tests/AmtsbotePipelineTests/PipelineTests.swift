import AmtsboteTestSupport
import Foundation
import Postfach
import Testing
@testable import AmtsbotePipeline
import XoevRouting
import XoevValidation

/// A pipeline over temporary directories, the project's schemas and sample routing.
struct Harness {
    let directory: URL
    let ledger: SQLiteLedger
    let pipeline: Pipeline

    static let validator: Validator = {
        do { return Validator(schemas: try SchemaSet(manifestAt: TestEnvironment.projectRoot.appendingPathComponent("Schemas").path)) }
        catch { fatalError("\(error)") }
    }()
    static let router: Router = {
        let routing = TestEnvironment.projectRoot.appendingPathComponent("Samples/routing")
        do {
            let directory = try MunicipalityDirectory(csv: routing.appendingPathComponent("gemeinden_ags_ars_2026-04-30.csv").path,
                                                      retiredKeys: routing.appendingPathComponent("ags-retired-since-2011.txt").path)
            return try Router(tables: [RoutingTable(file: routing.appendingPathComponent("routing-2026-04-30.tsv").path,
                                                    directory: directory)], directory: directory)
        } catch { fatalError("\(error)") }
    }()

    init(backend: (any PostfachBackend)? = nil, retry: RetryPolicy = RetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(10))) throws {
        directory = try TestEnvironment.temporaryDirectory()
        ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
        let backend = try backend ?? FilesystemBackend(root: directory.appendingPathComponent("postfach"))
        pipeline = Pipeline(validator: Self.validator, router: Self.router, backends: BackendSelection(default: backend),
                            ledger: ledger, spool: try Spool(directory: directory.appendingPathComponent("spool")), retry: retry)
    }

    func sample(_ relative: String) -> String {
        TestEnvironment.projectRoot.appendingPathComponent("Samples/\(relative)").path
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

@Suite("Pipeline: validate, route, deliver, with the ledger first")
struct PipelineTests {
    @Test("valid samples are delivered unchanged into the right Postfach, with receipts")
    func delivered() async throws {
        let harness = try Harness()
        defer { harness.remove() }
        let submission = try await harness.pipeline.submit(file: harness.sample("valid/wohnsitz-anmeldung-koeln.xml"))
        #expect(submission.state == .delivered)
        #expect(submission.postfach == "gemeinde-05315000-koeln")
        #expect(submission.deliveryId == SampleSubmissions.koelnUUID)
        let file = harness.directory.appendingPathComponent("postfach/gemeinde-05315000-koeln/\(SampleSubmissions.koelnUUID).xml")
        #expect(try Data(contentsOf: file) == Data(contentsOf: URL(fileURLWithPath: harness.sample("valid/wohnsitz-anmeldung-koeln.xml"))))
        let receipt = try #require(submission.receipt)
        #expect(receipt.contains(file.path))
        let routing = try #require(submission.routing)
        #expect(routing.contains("\"level\":\"Gemeinde\""))
    }

    @Test("invalid and unroutable submissions are kept with their reason, payload included")
    func keptWithReason() async throws {
        let harness = try Harness()
        defer { harness.remove() }
        let rejected = try await harness.pipeline.submit(file: harness.sample("invalid/wohnsitz-unmoegliches-datum.xml"))
        #expect(rejected.state == .rejected)
        #expect(rejected.reasonCode == "schema.value.type")
        #expect(rejected.reason == "line 32, column 48 (/wa:wohnsitz.anmeldung.0101/wa:einzugsdatum)")
        #expect(FileManager.default.fileExists(atPath: try #require(rejected.payloadLocation)))
        let retired = try await harness.pipeline.submit(file: harness.sample("unroutable/wohnsitz-anmeldung-hanau-alter-schluessel.xml"))
        #expect(retired.state == .unroutable)
        #expect(retired.reasonCode == "route.key-retired")
        let unknown = try await harness.pipeline.submit(file: harness.sample("unroutable/hundesteuer-unbekannte-gemeinde.xml"))
        #expect(unknown.reasonCode == "route.key-unknown")
        let missing = try await harness.pipeline.submit(file: harness.directory.appendingPathComponent("nope.xml").path)
        #expect(missing.state == .abandoned)
        #expect(missing.reasonCode == "input.unreadable")
        #expect(try await harness.ledger.counts() == [.rejected: 1, .unroutable: 2, .abandoned: 1])
    }

    @Test("the same message id twice: delivered once, the resend is a duplicate pointing at the original")
    func duplicates() async throws {
        let harness = try Harness()
        defer { harness.remove() }
        let first = try await harness.pipeline.submit(file: harness.sample("valid/gewerbe-anmeldung-gmbh-muenchen.xml"))
        let second = try await harness.pipeline.submit(file: harness.sample("valid/gewerbe-anmeldung-gmbh-muenchen.xml"))
        #expect(first.state == .delivered)
        #expect(second.state == .duplicate)
        #expect(second.duplicateOf == first.id)
        let postfach = harness.directory.appendingPathComponent("postfach/land-09-bayern")
        #expect(try FileManager.default.contentsOfDirectory(atPath: postfach.path).filter { $0.hasSuffix(".xml") }.count == 1)
    }

    @Test("a failing backend retries with backoff, ends in dead letter, and recovers with requeue")
    func deadLetterAndRetry() async throws {
        let backend = InMemoryBackend()
        await backend.failNext(3, with: PostfachError(code: .unavailable, message: "Fachverfahren offline"))
        let harness = try Harness(backend: backend)
        defer { harness.remove() }
        let first = try await harness.pipeline.submit(file: harness.sample("valid/wohnsitz-anmeldung-koeln.xml"))
        #expect(first.state == .queued)
        #expect(first.attempts == 1)
        let next = try #require(first.nextAttemptAt)
        #expect(next > first.updatedAt.addingTimeInterval(-1))
        try await harness.pipeline.drain(waitingAtMost: .seconds(120))
        let dead = try #require(try await harness.ledger.submission(first.id!))
        #expect(dead.state == .dead)
        #expect(dead.attempts == 3)
        #expect(dead.reasonCode == "postfach.unavailable")
        #expect(dead.reason == "Fachverfahren offline")
        #expect(FileManager.default.fileExists(atPath: try #require(dead.payloadLocation)), "the dead letter keeps its payload")
        #expect(await backend.count == 0)
        let requeued = try await harness.pipeline.requeue(nil)
        #expect(requeued.map(\.id) == [first.id])
        try await harness.pipeline.drain(waitingAtMost: .seconds(120))
        let delivered = try #require(try await harness.ledger.submission(first.id!))
        #expect(delivered.state == .delivered)
        #expect(await backend.count == 1)
    }

    @Test("a permanent failure goes to dead letter at once")
    func permanentFailure() async throws {
        let backend = InMemoryBackend()
        await backend.failNext(1, with: PostfachError(code: .rejected, message: "payload refused"))
        let harness = try Harness(backend: backend)
        defer { harness.remove() }
        let submission = try await harness.pipeline.submit(file: harness.sample("valid/wohnsitz-anmeldung-koeln.xml"))
        #expect(submission.state == .dead)
        #expect(submission.attempts == 1)
    }

    @Test("after a crash: interrupted intakes are abandoned (with what they left in the spool), validated ones routed, queued ones delivered")
    func recovery() async throws {
        let harness = try Harness()
        defer { harness.remove() }
        // A crash while reading: the row exists, no payload, and the process that read it is gone (same pid,
        // another start time: a reused pid). Another intake is still being read by a process that runs.
        let current = ProcessIdentity.current
        let gone = ProcessIdentity(bootID: current.bootID, pid: current.pid, startTicks: current.startTicks + 1)
        let other = try #require(ProcessIdentity.running(pid: getppid()))
        let path = harness.directory.appendingPathComponent("ledger.sqlite").path
        let interrupted = try await SQLiteLedger(path: path, identity: gone).recordReceived(source: "upload-1", at: Date())
        let reading = try await SQLiteLedger(path: path, identity: other).recordReceived(source: "upload-2", at: Date())
        for id in [interrupted.id!, reading.id!] {
            try Data("<partial".utf8).write(to: harness.directory.appendingPathComponent("spool/.\(id).xml.tmp"))
        }
        // A crash after the payload was kept (moved into place) but before verdict and queueing were written: the
        // row is still `received` and names no payload, so nothing else would ever remove the file.
        let kept = try await SQLiteLedger(path: path, identity: gone).recordReceived(source: "upload-3", at: Date())
        try Data("<complete/>".utf8).write(to: harness.directory.appendingPathComponent("spool/\(kept.id!).xml"))
        // A crash after validation: the row knows its keys, nothing routed yet.
        let validated = try await harness.pipeline.submit(file: harness.sample("valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml"))
        var rewound = validated
        rewound.state = .validated
        rewound.postfach = nil
        rewound.receipt = nil
        try harness.ledger.overwrite(rewound)
        let resumed = try await harness.pipeline.recover()
        #expect(try await harness.ledger.submission(interrupted.id!)?.state == .abandoned)
        #expect(try await harness.ledger.submission(reading.id!)?.state == .received, "a running intake is left alone")
        let spool = harness.directory.appendingPathComponent("spool")
        #expect(!FileManager.default.fileExists(atPath: spool.appendingPathComponent(".\(interrupted.id!).xml.tmp").path))
        #expect(FileManager.default.fileExists(atPath: spool.appendingPathComponent(".\(reading.id!).xml.tmp").path))
        let abandonedKept = try await harness.ledger.submission(kept.id!)
        #expect(abandonedKept?.state == .abandoned && abandonedKept?.reasonCode == "intake.interrupted")
        #expect(!FileManager.default.fileExists(atPath: spool.appendingPathComponent("\(kept.id!).xml").path),
                "a kept payload no row names is removed with its abandoned intake")
        let redone = try #require(resumed.first { $0.id == validated.id })
        #expect(redone.state == .delivered)
        // The Postfach already held it: the receipt says so, and there is still one copy.
        #expect(redone.receipt?.contains("\"alreadyPresent\":true") == true)
        let files = try FileManager.default.contentsOfDirectory(
            atPath: harness.directory.appendingPathComponent("postfach/gemeinde-05915000-hamm").path)
        #expect(files.filter { $0.hasSuffix(".xml") }.count == 1)
    }

    @Test("purge never touches unfinished work, and a purged dead letter is not re-queued")
    func purgeLeavesUnfinishedWork() async throws {
        let backend = InMemoryBackend()
        await backend.failNext(10, with: PostfachError(code: .unavailable, message: "down"))
        let harness = try Harness(backend: backend, retry: RetryPolicy(maxAttempts: 1, initialDelay: .seconds(3600), fullJitter: false))
        defer { harness.remove() }
        let dead = try await harness.pipeline.submit(file: harness.sample("valid/wohnsitz-anmeldung-koeln.xml"))
        #expect(dead.state == .dead)
        let later = RetryPolicy(maxAttempts: 5, initialDelay: .seconds(3600), fullJitter: false)
        let waiting = try await Pipeline(validator: Harness.validator, router: Harness.router, backends: BackendSelection(default: backend),
                                         ledger: harness.ledger, spool: harness.pipeline.spool, retry: later)
            .submit(file: harness.sample("valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml"))
        #expect(waiting.state == .queued)
        let purged = try await Purge(ledger: harness.ledger).run(policy: .default, olderThan: 0, now: Date().addingTimeInterval(1))
        #expect(purged.map(\.id) == [dead.id])
        #expect(!FileManager.default.fileExists(atPath: try #require(dead.payloadLocation)))
        #expect(FileManager.default.fileExists(atPath: try #require(waiting.payloadLocation)), "queued work keeps its payload")
        let row = try #require(try await harness.ledger.submission(dead.id!))
        #expect(row.purgedAt != nil && row.payloadLocation == nil && row.payloadSHA256 == dead.payloadSHA256)
        #expect(try await harness.pipeline.requeue([dead.id!]).isEmpty, "a purged dead letter has nothing to deliver")
    }

    @Test("delivery leases: a running process's lease is respected, a gone one's taken over, a late outcome changes nothing")
    func leases() async throws {
        let backend = InMemoryBackend()
        await backend.failNext(1, with: PostfachError(code: .unavailable, message: "down"))
        let harness = try Harness(backend: backend, retry: RetryPolicy(maxAttempts: 5, initialDelay: .seconds(3600), fullJitter: false))
        defer { harness.remove() }
        let queued = try await harness.pipeline.submit(file: harness.sample("valid/wohnsitz-anmeldung-koeln.xml"))
        #expect(queued.state == .queued && queued.owner == nil && queued.leaseToken == nil,
                "after a failed attempt the lease is released")
        let path = harness.directory.appendingPathComponent("ledger.sqlite").path
        let current = ProcessIdentity.current
        let running = try #require(ProcessIdentity.running(pid: getppid()))
        let gone = ProcessIdentity(bootID: current.bootID, pid: current.pid, startTicks: current.startTicks + 1)
        let soon = Date().addingTimeInterval(3 * 3600)

        // Not due yet: nobody claims it. Due: a running process claims it, and then it is that process's.
        let runningLedger = try SQLiteLedger(path: path, identity: running)
        #expect(try await runningLedger.claimDue(limit: 5, dueBy: nil, leaseFor: .seconds(3600)).isEmpty)
        let leased = try #require(try await runningLedger.claimDue(limit: 5, dueBy: soon, leaseFor: .seconds(3600)).first)
        #expect(leased.state == .running && leased.attempts == 2 && leased.owner == running.description)
        #expect(try await harness.pipeline.deliverDue(at: soon).isEmpty, "a running row is not claimed twice")
        #expect(try await harness.pipeline.rescueRunning().isEmpty, "a running owner's unexpired lease is respected")
        #expect(try await harness.pipeline.requeue([queued.id!]).first?.owner == running.description, "and retry leaves it alone")
        #expect(await backend.count == 0)

        // The same lease held by a process that is gone: put back at once and delivered.
        var stale = leased
        stale.owner = gone.description
        try harness.ledger.overwrite(stale)
        #expect(try await harness.pipeline.rescueRunning().map(\.id) == [queued.id])
        let delivered = try await harness.pipeline.deliverDue()
        #expect(delivered.map(\.state) == [.delivered])
        // The gone process's late outcome (its token is not the row's any more) changes nothing.
        var late = stale
        late.state = .dead
        #expect(try await !SQLiteLedger(path: path, identity: gone).finishAttempt(late))
        #expect(try await harness.ledger.submission(queued.id!)?.state == .delivered)
        #expect(await backend.count == 1)
    }

    @Test("standard input and other streams are spooled while validated")
    func stream() async throws {
        let harness = try Harness()
        defer { harness.remove() }
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let data = try Data(contentsOf: URL(fileURLWithPath: harness.sample("valid/wohnsitz-anmeldung-koeln.xml")))
        let writeEnd = fds[1], readEnd = fds[0]
        let writer = Thread {
            data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(writeEnd, raw.baseAddress! + offset, min(97, raw.count - offset))
                    if n <= 0 { break }
                    offset += n
                }
            }
            close(writeEnd)
        }
        writer.start()
        let submission = try await harness.pipeline.submit(fileDescriptor: readEnd, named: "-")
        close(readEnd)
        #expect(submission.state == .delivered)
        #expect(submission.payloadSize == Int64(data.count))
        #expect(try Data(contentsOf: URL(fileURLWithPath: submission.payloadLocation!)) == data)
    }

    @Test("a body in pieces: within the store's in-memory limit it is kept in the ledger without a spool file, past it in a spool file; both are delivered byte for byte",
          arguments: [65_536, 1_000])
    func piecesInMemoryOrSpooled(limit: Int) async throws {
        let harness = try Harness()
        defer { harness.remove() }
        let spool = harness.directory.appendingPathComponent("spool")
        let payloads = SQLitePayloadStore(ledger: harness.ledger, scratch: spool, inMemoryLimit: limit)
        let postfach = harness.directory.appendingPathComponent("postfach")
        let pipeline = Pipeline(validator: Harness.validator, router: Harness.router,
                                backends: BackendSelection(default: try FilesystemBackend(root: postfach)),
                                ledger: harness.ledger, spool: harness.pipeline.spool, payloads: payloads)
        let data = try Data(contentsOf: URL(fileURLWithPath: harness.sample("valid/wohnsitz-anmeldung-koeln.xml")))
        #expect(data.count > 1_000 && data.count < 65_536, "the sample lies between the two limits")
        let incoming = try await pipeline.receive(named: "http:test", origin: IntakeOrigin(client: "test"))
        for start in stride(from: 0, to: data.count, by: 97) {
            let kept = try data[start..<min(start + 97, data.count)].withUnsafeBytes { try incoming.write($0) }
            #expect(kept)
        }
        let submission = try await incoming.complete()
        #expect(submission.state == .delivered)
        let location = try #require(submission.payloadLocation)
        let spooled = try FileManager.default.contentsOfDirectory(atPath: spool.path)
        if limit >= data.count {
            #expect(location.hasPrefix("sqlite:"), "kept in the ledger: \(location)")
            #expect(spooled.isEmpty, "no spool file: \(spooled)")
        } else {
            #expect(try Data(contentsOf: URL(fileURLWithPath: location)) == data, "the spool file holds all of it")
            #expect(spooled == ["\(submission.id!).xml"])
        }
        #expect(try await payloads.withPayload(location) { try $0.contents() } == data)
        let delivered = try FileManager.default.contentsOfDirectory(atPath: postfach.path)
            .filter { !$0.hasPrefix(".") && $0 != "journal.log" }
        let box = try #require(delivered.first)
        let files = try FileManager.default.contentsOfDirectory(atPath: postfach.appendingPathComponent(box).path)
        let xml = try #require(files.first { $0.hasSuffix(".xml") })
        #expect(try Data(contentsOf: postfach.appendingPathComponent(box).appendingPathComponent(xml)) == data)
    }

    @Test("payloads kept in the ledger: an interrupted intake's is removed at recovery, a purged one is deleted with the log truncated, an older version's leftover is swept")
    func ledgerKeptPayloadsRecoveryAndPurge() async throws {
        let harness = try Harness()
        defer { harness.remove() }
        let path = harness.directory.appendingPathComponent("ledger.sqlite").path
        let payloads = SQLitePayloadStore(ledger: harness.ledger, scratch: harness.directory.appendingPathComponent("spool"))
        let pipeline = Pipeline(validator: Harness.validator, router: Harness.router,
                                backends: BackendSelection(default: InMemoryBackend()), ledger: harness.ledger,
                                spool: harness.pipeline.spool, payloads: payloads)
        // A crash between keeping the payload and recording the verdict: a received row of a gone process.
        let current = ProcessIdentity.current
        let gone = ProcessIdentity(bootID: current.bootID, pid: current.pid, startTicks: current.startTicks + 1)
        let interrupted = try await SQLiteLedger(path: path, identity: gone).recordReceived(source: "http:a", at: Date())
        let location = try await payloads.keep(bytes: Array("<partial/>".utf8), submission: interrupted.id!)
        _ = try await pipeline.recover()
        #expect(try await harness.ledger.submission(interrupted.id!)?.state == .abandoned)
        await #expect(throws: (any Error).self, "the interrupted intake's payload is gone") {
            try await payloads.withPayload(location) { _ in () }
        }
        // Delivered from the ledger, then purged: the payload row is deleted and the log emptied.
        let data = try Data(contentsOf: URL(fileURLWithPath: harness.sample("valid/wohnsitz-anmeldung-koeln.xml")))
        let incoming = try await pipeline.receive(named: "http:b", origin: IntakeOrigin(client: "b"))
        _ = try data.withUnsafeBytes { try incoming.write($0) }
        let delivered = try await incoming.complete()
        #expect(delivered.state == .delivered)
        let kept = try #require(delivered.payloadLocation)
        #expect(kept.hasPrefix("sqlite:"))
        // What an older version's purge leaves: a purged row whose payload row it did not know about.
        let older = try await SQLiteLedger(path: path, identity: gone).recordReceived(source: "http:c", at: Date())
        _ = try await payloads.keep(bytes: Array("<old/>".utf8), submission: older.id!)
        var forgotten = older
        forgotten.state = .rejected
        forgotten.purgedAt = Date()
        try harness.ledger.overwrite(forgotten)
        let purged = try await Purge(ledger: harness.ledger, payloads: payloads)
            .run(policy: .default, olderThan: 0, states: [.delivered], now: Date().addingTimeInterval(1))
        #expect(purged.map(\.id) == [delivered.id])
        await #expect(throws: (any Error).self, "the purged payload is gone") {
            try await payloads.withPayload(kept) { _ in () }
        }
        await #expect(throws: (any Error).self, "the older version's leftover is swept") {
            try await payloads.withPayload("sqlite:\(older.id!)") { _ in () }
        }
        let log = (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0
        #expect(log == 0, "the write-ahead log is truncated after a purge: \(log) bytes")
    }

    @Test("backoff grows exponentially up to its cap")
    func backoff() {
        let policy = RetryPolicy(maxAttempts: 6, initialDelay: .seconds(1), multiplier: 2, maxDelay: .seconds(5))
        #expect((1...5).map { policy.delay(afterAttempt: $0) } == [.seconds(1), .seconds(2), .seconds(4), .seconds(5), .seconds(5)])
    }
}
