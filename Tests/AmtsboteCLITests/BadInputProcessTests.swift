import AmtsboteTestSupport
import Foundation
import Testing

/// Every hostile input through the built binary, one process each: the verdict and code the catalogue expects,
/// decided without hanging, within 256 MiB of peak memory (the process's own `ru_maxrss`).
@Suite("Hostile inputs through the binary: verdict, time guard, peak memory", .enabled(if: TestEnvironment.badInputTestsEnabled))
struct BadInputProcessTests {
    static let memoryCeilingKiB = 256 * 1024

    @Test("stored and generated bad inputs, one amtsbote process each")
    func eachInputInItsOwnProcess() throws {
        let badInputs = try #require(TestEnvironment.badInputs, "../shared/bad-inputs is required but missing")
        let generated = try #require(GeneratedBadInputs.directory, "gen_bad_inputs.py big failed")
        let cases = BadInputExpectations.small.map { (badInputs.appendingPathComponent($0.key), $0.value) }
            + BadInputExpectations.big.compactMap { name, expected -> (URL, String?)? in
                let url = generated.appendingPathComponent(name)
                return FileManager.default.fileExists(atPath: url.path) ? (url, expected) : nil
            }
        #expect(cases.count >= BadInputExpectations.small.count + 18, "the generator made \(cases.count) files in all")
        let scratch = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let guardSeconds = Double(ProcessInfo.processInfo.environment["AMTSBOTE_TIME_GUARD_SECONDS"] ?? "") ?? 10
        var worst = (kib: 0, name: "")
        for (file, expected) in cases.sorted(by: { $0.0.path < $1.0.path }) {
            let name = file.lastPathComponent
            let output = scratch.appendingPathComponent("out.json")
            let started = ContinuousClock.now
            let child = try Child(CLI.binary.path, ["validate", "--format", "json", "--xsd",
                                                    badInputs.appendingPathComponent("test.xsd").path, file.path],
                                  stdout: output.path, stderr: "/dev/null")
            while child.isRunning() && ContinuousClock.now - started < .seconds(guardSeconds) { usleep(1_000) }
            let hung = child.isRunning()
            if hung { child.kill() }
            child.wait()
            #expect(!hung, "\(name) was not decided within \(guardSeconds) s")
            #expect(child.status == (expected == nil ? 0 : 1), "\(name): exit \(child.status ?? -1)")
            let peak = try #require(child.peakKiB)
            #expect(peak <= Self.memoryCeilingKiB, "\(name): peak \(peak / 1024) MiB")
            if peak > worst.kib { worst = (peak, name) }
            let line = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").first.map(String.init) ?? ""
            let record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(name)")
            let codes = (record["diagnostics"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
            if let expected {
                #expect(record["status"] as? String == "invalid" && codes.contains(expected), "\(name): \(codes)")
            } else {
                #expect(record["status"] as? String == "valid", "\(name): \(codes)")
            }
        }
        print("largest peak memory over the bad inputs: \(worst.kib / 1024) MiB (\(worst.name))")
    }
}
