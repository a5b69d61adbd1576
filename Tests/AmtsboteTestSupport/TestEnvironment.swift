import Foundation
import Testing

/// Where the tests find the project, the shared corpus and the hostile inputs, and whether their absence is a
/// failure (`AMTSBOTE_REQUIRE_CORPUS=1`, set by `.ci/run`) or a skip with a printed reason.
public enum TestEnvironment {
    /// The package root (the folder holding Package.swift).
    public static let projectRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// `true` when shared material must be present (CI).
    public static var sharedMaterialRequired: Bool {
        ProcessInfo.processInfo.environment["AMTSBOTE_REQUIRE_CORPUS"] == "1"
    }

    /// The real-world corpus: `$AMTSBOTE_CORPUS`, else `../shared/corpus` beside the project.
    public static var corpus: URL? {
        locate(environment: "AMTSBOTE_CORPUS", default: "../shared/corpus", marker: "MANIFEST.md")
    }

    /// The hostile-input catalogue: `$AMTSBOTE_BAD_INPUTS`, else `../shared/bad-inputs` beside the project.
    public static var badInputs: URL? {
        locate(environment: "AMTSBOTE_BAD_INPUTS", default: "../shared/bad-inputs", marker: "catalogue.tsv")
    }

    /// A check that needs something this machine may lack (root, strace, a browser, a free port): enabled where it
    /// is there, and also where every check is required (`AMTSBOTE_REQUIRE_CORPUS=1`, CI), where the test then
    /// fails on its own `#require` instead of being skipped. Use as `.enabled(if: TestEnvironment.canRun(x), "why")`.
    public static func canRun(_ available: Bool) -> Bool { available || sharedMaterialRequired }

    /// Tests that need shared material run when it is there, and also when it is required (they then fail).
    public static var corpusTestsEnabled: Bool { corpus != nil || sharedMaterialRequired }
    /// See ``corpusTestsEnabled``.
    public static var badInputTestsEnabled: Bool { badInputs != nil || sharedMaterialRequired }

    private static func locate(environment: String, default relative: String, marker: String) -> URL? {
        let path = ProcessInfo.processInfo.environment[environment].flatMap { $0.isEmpty ? nil : $0 }
        let url = path.map { URL(fileURLWithPath: $0) }
            ?? projectRoot.appendingPathComponent(relative).standardizedFileURL
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(marker).path) { return url }
        let reason = "\(url.path) not found (set \(environment) to its location)"
        FileHandle.standardError.write(Data("note: \(reason); tests that need it are skipped\n".utf8))
        return nil
    }

    /// A fresh temporary directory, removed by the caller.
    public static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("amtsbote-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// The loopback canary of the bad-input catalogue (`canary_http.py` on 127.0.0.1:9): every URL in the hostile
/// inputs points there, so any fetch shows up as a line in its log.
public final class LoopbackCanary: @unchecked Sendable {
    // Safety: immutable after init; the process handle is only terminated in deinit.
    public let log: URL
    private let process: Process

    /// Starts the canary; returns nil (with the reason) when it cannot listen on port 9.
    public static func start(badInputs: URL) throws -> LoopbackCanary {
        let log = try TestEnvironment.temporaryDirectory().appendingPathComponent("canary.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", badInputs.appendingPathComponent("canary_http.py").path,
                             "--port", "9", "--log", log.path, "--lifetime", "900"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try ProcessStart.serialized { try process.run() }
        // Up to 30 s for python to start listening: a guard for a loaded machine, left as soon as it listens.
        for _ in 0..<600 {
            if isListening() { return LoopbackCanary(log: log, process: process) }
            if !process.isRunning { break }
            usleep(50_000)
        }
        process.terminate()
        throw CanaryError.notListening
    }

    private init(log: URL, process: Process) {
        self.log = log
        self.process = process
    }

    deinit { process.terminate() }

    /// Requests the canary has seen so far.
    public var requestCount: Int {
        ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    private static func isListening() -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(9).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// Why the canary could not be used.
    public enum CanaryError: Error { case notListening }
}

extension LoopbackCanary {
    /// Whether the canary can listen here (127.0.0.1:9 needs root). Tests that need it are enabled with
    /// `.enabled(if: TestEnvironment.canRun(LoopbackCanary.available), LoopbackCanary.unavailableReason)`.
    public static var available: Bool {
        if case .success = shared { return true }
        return false
    }

    /// Why the canary is not running, printed with the skip.
    public static var unavailableReason: Comment {
        switch shared {
        case .success: return "the loopback canary runs"
        case .failure(let error):
            return Comment(rawValue: "the loopback canary cannot listen on 127.0.0.1:9 (\(error)); the fetch checks are skipped")
        }
    }

    /// The shared canary; a failure where it cannot run (the test is then enabled only because every check is
    /// required, and must fail).
    public static func forTest() throws -> LoopbackCanary {
        try shared.get()
    }

    /// One canary for the whole test process, started on first use.
    public static let shared: Result<LoopbackCanary, any Error> = {
        guard let badInputs = TestEnvironment.badInputs else { return .failure(CanaryError.notListening) }
        return Result { try LoopbackCanary.start(badInputs: badInputs) }
    }()
}

/// Submissions made from the samples, each with a fresh message id.
public enum SampleSubmissions {
    /// The Köln sample's message UUID, replaced in copies.
    public static let koelnUUID = "3f2b9c1e-8d4a-4e6b-9a7c-1d2e3f4a5b6c"

    /// Writes `count` copies of the Köln Anmeldung with distinct UUIDs into `directory`; returns their UUIDs.
    @discardableResult
    public static func write(count: Int, into directory: URL) throws -> [String] {
        let template = try String(contentsOf: TestEnvironment.projectRoot
            .appendingPathComponent("Samples/valid/wohnsitz-anmeldung-koeln.xml"), encoding: .utf8)
        var ids: [String] = []
        for index in 0..<count {
            let id = String(format: "00000000-0000-4000-8000-%012d", index)
            try template.replacingOccurrences(of: koelnUUID, with: id)
                .write(to: directory.appendingPathComponent(String(format: "antrag-%05d.xml", index)), atomically: false, encoding: .utf8)
            ids.append(id)
        }
        return ids
    }
}

/// Waits for something another thread or process does, checking every 10 ms. The bound only catches a hang (two
/// minutes, `AMTSBOTE_TIME_GUARD_SECONDS` raises it): a test passes as soon as the condition holds, however slow
/// or fast the machine, and never because time ran out.
public func waitUntil(_ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                      _ condition: () async throws -> Bool) async throws {
    let hang = HangGuard(what, sourceLocation: sourceLocation)
    while !(try await condition()) {
        try hang.check()
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Synchronous form of ``waitUntil(_:sourceLocation:_:)`` for tests that must not wait for a turn on the task pool.
public func waitUntilSync(_ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                          _ condition: () throws -> Bool) throws {
    let hang = HangGuard(what, sourceLocation: sourceLocation)
    while !(try condition()) {
        try hang.check()
        usleep(10_000)
    }
}

/// A wait's hang guard ran out.
public struct TimeGuardExceeded: Error {}

/// The bound of a wait: two minutes, or `AMTSBOTE_TIME_GUARD_SECONDS` when that is longer.
struct HangGuard {
    let what: String
    let sourceLocation: SourceLocation
    let limit = max(120, Double(ProcessInfo.processInfo.environment["AMTSBOTE_TIME_GUARD_SECONDS"] ?? "") ?? 0)
    let deadline: ContinuousClock.Instant

    init(_ what: String, sourceLocation: SourceLocation) {
        self.what = what
        self.sourceLocation = sourceLocation
        deadline = ContinuousClock.now + .seconds(limit)
    }

    /// Records the hang and throws once the bound has passed.
    func check() throws {
        guard ContinuousClock.now >= deadline else { return }
        Issue.record("still waiting after \(Int(limit)) s: \(what)", sourceLocation: sourceLocation)
        throw TimeGuardExceeded()
    }
}

/// Runs blocking `body` on a thread of its own, not on Swift's cooperative pool: a test that waits synchronously
/// (for a child process, for files to appear) must neither be starved by other tests' tasks nor starve them.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
