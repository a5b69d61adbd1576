import Foundation

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
        try process.run()
        for _ in 0..<100 {
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
    /// The shared canary, or nil (with a printed reason) when it cannot listen on 127.0.0.1:9 here, for example
    /// without the right to bind a port below 1024. Where shared material is required (CI), that is a failure.
    public static func forTest() throws -> LoopbackCanary? {
        switch shared {
        case .success(let canary):
            return canary
        case .failure(let error):
            // Port 9 needs root; without it the strace test still proves that nothing connects anywhere.
            if TestEnvironment.sharedMaterialRequired && getuid() == 0 { throw error }
            FileHandle.standardError.write(Data("note: loopback canary not running (\(error)); fetch checks skipped\n".utf8))
            return nil
        }
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
