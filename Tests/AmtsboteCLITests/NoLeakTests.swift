import AmtsboteTestSupport
import Foundation
import Testing

/// The strongest proof that hostile input reads no file and reaches no network: watch the system calls.
@Suite("System calls under hostile input (strace)", .enabled(if: TestEnvironment.badInputTestsEnabled))
struct NoLeakTests {
    static var strace: String? {
        ["/usr/bin/strace", "/bin/strace"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test("validating every stored bad input opens only the inputs and the schema, and connects nowhere",
          .enabled(if: TestEnvironment.canRun(strace != nil), "strace is not installed: the system-call check is skipped"))
    func onlyInputsAndSchemaAreOpened() throws {
        let badInputs = try #require(TestEnvironment.badInputs, "../shared/bad-inputs is required but missing")
        let strace = try #require(Self.strace, "strace is required where every check must run (scripts/test installs it)")
        let inputs = try FileManager.default.contentsOfDirectory(atPath: badInputs.path)
            .filter { $0.hasSuffix(".xml") || $0.hasSuffix(".xml.gz") }.sorted()
            .map { badInputs.appendingPathComponent($0).path }
        let schema = badInputs.appendingPathComponent("test.xsd").path
        let log = try TestEnvironment.temporaryDirectory().appendingPathComponent("strace.log")
        defer { try? FileManager.default.removeItem(at: log.deletingLastPathComponent()) }
        let result = try CLI.run(["validate", "--quiet", "--xsd", schema] + inputs,
                                 wrapper: [strace, "-f", "-qq", "-e", "trace=open,openat,connect", "-o", log.path])
        #expect(result.status == 1)
        let calls = try String(contentsOf: log, encoding: .utf8).split(separator: "\n")
        let allowedPrefixes = ["/lib", "/usr/lib", "/usr/share/locale", "/usr/share/zoneinfo", "/etc/ld.so", "/etc/localtime",
                               "/proc/", "/sys/", "/dev/", "/opt/swift", "/usr/local/lib"]
        var unexpected: [String] = []
        var opened = Set<String>()
        for call in calls where call.contains("open") || call.contains("connect(") {
            if call.contains("connect(") { unexpected.append(String(call)); continue }
            guard let start = call.firstIndex(of: "\""), let end = call[call.index(after: start)...].firstIndex(of: "\"") else { continue }
            let path = String(call[call.index(after: start)..<end])
            let absolute = path.hasPrefix("/") ? path : TestEnvironment.projectRoot.appendingPathComponent(path).standardizedFileURL.path
            opened.insert(absolute)
            if absolute == schema || inputs.contains(absolute) || path == CLI.binary.path { continue }
            if absolute.hasPrefix(CLI.binary.deletingLastPathComponent().path) { continue }
            if allowedPrefixes.contains(where: { absolute.hasPrefix($0) }) { continue }
            unexpected.append(String(call))
        }
        #expect(unexpected.isEmpty, "unexpected system calls:\n\(unexpected.joined(separator: "\n"))")
        #expect(opened.contains(schema))
        #expect(inputs.allSatisfy { opened.contains($0) }, "every input is read")
        for secret in ["/etc/passwd", "/etc/hostname", "evil.dtd", "permissive.xsd"] {
            #expect(!opened.contains { $0.hasSuffix(secret) }, "\(secret) was opened")
        }
    }
}
