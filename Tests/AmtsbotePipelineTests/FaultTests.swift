import AmtsboteTestSupport
import Foundation
import Postfach
import Testing
@testable import AmtsbotePipeline

/// A small tmpfs mounted for one test: a disk that can be filled up or made read-only for real (root only).
final class ScratchMount {
    let path: URL

    /// Mounting needs root; elsewhere the tests that need it are skipped with this reason.
    static let available = geteuid() == 0
    static let unavailableReason = "mounting a tmpfs needs root: the disk-full and read-only fault tests are skipped"

    init(size: String) throws {
        try #require(Self.available, "root is required where every check must run")
        path = try TestEnvironment.temporaryDirectory()
        try Self.mount(["-t", "tmpfs", "-o", "size=\(size),mode=0755", "tmpfs", path.path])
    }

    func remount(readOnly: Bool) throws {
        try Self.mount(["-o", readOnly ? "remount,ro" : "remount,rw", path.path])
    }

    /// Writes a file until the disk is full; returns it so the test can free the space again.
    func fill() throws -> URL {
        let filler = path.appendingPathComponent("filler")
        let fd = open(filler.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        let block = [UInt8](repeating: 0x20, count: 4096)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        #expect(errno == ENOSPC)
        return filler
    }

    deinit {
        _ = try? Self.run("/bin/umount", ["-l", path.path])
        try? FileManager.default.removeItem(at: path)
    }

    private static func mount(_ arguments: [String]) throws {
        let status = try run("/bin/mount", arguments)
        guard status == 0 else { throw POSIXError(.EPERM) }
    }

    private static func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        try ProcessStart.serialized { try process.run() }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// A backend whose first `stalls` deliveries hang until released, ignoring cancellation (a server that never
/// answers); released calls then complete late, into the in-memory Postfach.
actor StallingBackend: PostfachBackend {
    nonisolated let kind = "stalling"
    let inner = InMemoryBackend()
    private var stalls: Int
    private var parked: [CheckedContinuation<Void, Never>] = []
    private(set) var calls = 0

    init(stalls: Int) { self.stalls = stalls }

    func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        calls += 1
        if stalls > 0 {
            stalls -= 1
            await withCheckedContinuation { parked.append($0) }
        }
        // A backend that ignores cancellation: a call that hung goes on to the end once released.
        let inner = inner
        return try await Task.detached { try await inner.deliver(delivery) }.value
    }

    /// Lets every hanging call go on.
    func release() {
        parked.forEach { $0.resume() }
        parked.removeAll()
    }
}

@Suite("Faults in delivery: full disk, read-only mount, hanging backend")
struct FaultTests {
    static let sample = "valid/wohnsitz-anmeldung-koeln.xml"
    static let postfach = "gemeinde-05315000-koeln"

    /// Nothing of a failed delivery may be visible: no payload, no temporary file.
    static func expectNothingVisible(in root: URL) {
        let inbox = root.appendingPathComponent(postfach)
        let visible = ((try? FileManager.default.contentsOfDirectory(atPath: inbox.path)) ?? []).filter { $0.hasSuffix(".xml") }
        #expect(visible.isEmpty, "a failed delivery left \(visible)")
        let incoming = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(".incoming").path)) ?? []
        #expect(incoming.isEmpty, "temporary files left: \(incoming)")
    }

    static func expectDeliveredUnchanged(_ submission: Submission, root: URL, harness: Harness) throws {
        #expect(submission.state == .delivered, "\(submission.reasonCode ?? "") \(submission.reason ?? "")")
        let delivered = root.appendingPathComponent("\(postfach)/\(try #require(submission.deliveryId)).xml")
        #expect(try Data(contentsOf: delivered) == Data(contentsOf: URL(fileURLWithPath: harness.sample(sample))))
    }

    @Test("a full disk: the attempt fails as postfach.unavailable, nothing partial stays, and the retry delivers",
          .enabled(if: TestEnvironment.canRun(ScratchMount.available), Comment(rawValue: ScratchMount.unavailableReason)))
    func diskFull() async throws {
        let disk = try ScratchMount(size: "128k")
        let root = disk.path.appendingPathComponent("postfach")
        let harness = try Harness(backend: try FilesystemBackend(root: root))
        defer { harness.remove() }
        try FileManager.default.createDirectory(at: root.appendingPathComponent(Self.postfach), withIntermediateDirectories: true)
        let filler = try disk.fill()

        let failed = try await harness.pipeline.submit(file: harness.sample(Self.sample))
        #expect(failed.state == .queued)
        #expect(failed.reasonCode == "postfach.unavailable")
        #expect(failed.reason?.contains("No space left on device") == true, "\(failed.reason ?? "")")
        Self.expectNothingVisible(in: root)
        #expect(FileManager.default.fileExists(atPath: try #require(failed.payloadLocation)), "the payload waits in the spool")

        try FileManager.default.removeItem(at: filler)
        try await harness.pipeline.drain(waitingAtMost: .seconds(60))
        try Self.expectDeliveredUnchanged(try #require(try await harness.ledger.submission(failed.id!)), root: root, harness: harness)
    }

    @Test("a full spool disk: the intake is refused with spool.failed and recorded, not lost silently",
          .enabled(if: TestEnvironment.canRun(ScratchMount.available), Comment(rawValue: ScratchMount.unavailableReason)))
    func spoolDiskFull() async throws {
        let disk = try ScratchMount(size: "64k")
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
        let spool = try Spool(directory: disk.path.appendingPathComponent("spool"))
        _ = try disk.fill()
        let pipeline = Pipeline(validator: Harness.validator, router: Harness.router,
                                backends: BackendSelection(default: InMemoryBackend()), ledger: ledger, spool: spool)
        let refused = try await pipeline.submit(file: TestEnvironment.projectRoot.appendingPathComponent("Samples/\(Self.sample)").path)
        #expect(refused.state == .abandoned)
        #expect(refused.reasonCode == "spool.failed")
        #expect(refused.reason?.contains("No space left on device") == true, "\(refused.reason ?? "")")
        #expect(try await ledger.submission(refused.id!)?.state == .abandoned)
        let left = try FileManager.default.contentsOfDirectory(atPath: spool.directory.path)
        #expect(left.isEmpty, "no partial spool file: \(left)")
    }

    @Test("a read-only Postfach mount: unavailable until it is writable again, then delivered once",
          .enabled(if: TestEnvironment.canRun(ScratchMount.available), Comment(rawValue: ScratchMount.unavailableReason)))
    func readOnlyMount() async throws {
        let disk = try ScratchMount(size: "1m")
        let root = disk.path.appendingPathComponent("postfach")
        let harness = try Harness(backend: try FilesystemBackend(root: root),
                                  retry: RetryPolicy(maxAttempts: 2, initialDelay: .milliseconds(10)))
        defer { harness.remove() }
        try FileManager.default.createDirectory(at: root.appendingPathComponent(Self.postfach), withIntermediateDirectories: true)
        try disk.remount(readOnly: true)

        let submission = try await harness.pipeline.submit(file: harness.sample(Self.sample))
        #expect(submission.state == .queued)
        #expect(submission.reason?.contains("Read-only file system") == true, "\(submission.reason ?? "")")
        Self.expectNothingVisible(in: root)
        try await harness.pipeline.drain(waitingAtMost: .seconds(60))
        let dead = try #require(try await harness.ledger.submission(submission.id!))
        #expect(dead.state == .dead)
        #expect(dead.attempts == 2)
        #expect(dead.reasonCode == "postfach.unavailable")

        try disk.remount(readOnly: false)
        #expect(try await harness.pipeline.requeue(nil).count == 1)
        try await harness.pipeline.drain(waitingAtMost: .seconds(60))
        try Self.expectDeliveredUnchanged(try #require(try await harness.ledger.submission(submission.id!)), root: root, harness: harness)
    }

    @Test("a backend that hangs: the attempt times out, is retried, and a late answer does not deliver twice")
    func hangingBackend() async throws {
        let backend = StallingBackend(stalls: 2)
        let harness = try Harness(backend: backend, retry: RetryPolicy(maxAttempts: 2, initialDelay: .milliseconds(10),
                                                                       attemptTimeout: .milliseconds(200)))
        defer { harness.remove() }
        let first = try await harness.pipeline.submit(file: harness.sample(Self.sample))
        #expect(first.state == .queued)
        #expect(first.reasonCode == "postfach.timeout")
        try await harness.pipeline.drain(waitingAtMost: .seconds(60))
        let dead = try #require(try await harness.ledger.submission(first.id!))
        #expect(dead.state == .dead, "both attempts hang")
        // Without the time limit both attempts would still hang and the row could not be dead: that is the proof the
        // queue was not held up (a wall-clock bound here failed on a slow sanitizer run).
        #expect(dead.reasonCode == "postfach.timeout")
        #expect(await backend.inner.count == 0)

        // The hanging calls answer late and store the payload; the next attempt finds it and nothing is doubled.
        await backend.release()
        try await waitUntil("the released calls store the payload") { await backend.inner.count > 0 }
        // Without a time limit now: on a loaded machine a healthy attempt may take longer than 200 ms.
        let patient = Pipeline(validator: Harness.validator, router: Harness.router, backends: BackendSelection(default: backend),
                               ledger: harness.ledger, spool: harness.pipeline.spool,
                               retry: RetryPolicy(maxAttempts: 2, initialDelay: .milliseconds(10), attemptTimeout: nil))
        #expect(try await patient.requeue(nil).count == 1)
        try await patient.drain(waitingAtMost: .seconds(60))
        let delivered = try #require(try await harness.ledger.submission(first.id!))
        #expect(delivered.state == .delivered, "\(delivered.reasonCode ?? ""): \(delivered.reason ?? "")")
        #expect(delivered.receipt?.contains("\"alreadyPresent\":true") == true, "\(delivered.receipt ?? "")")
        #expect(await backend.inner.count == 1)
        #expect(await backend.calls == 3)
    }
}
