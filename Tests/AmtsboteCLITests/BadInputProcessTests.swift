import AmtsboteTestSupport
import Foundation
import Testing
import XoevValidation

/// Every hostile input through the built binary, one process each: the verdict and code the catalogue expects,
/// decided without hanging, within 256 MiB of peak memory (the process's own `ru_maxrss`).
@Suite("Hostile inputs through the binary: verdict, time guard, peak memory", .enabled(if: TestEnvironment.badInputTestsEnabled))
struct BadInputProcessTests {
    /// 256 MiB; `AMTSBOTE_MEMORY_CEILING_MIB=0` switches the check off (sanitizer builds: shadow memory).
    static let memoryCeilingKiB = (Int(ProcessInfo.processInfo.environment["AMTSBOTE_MEMORY_CEILING_MIB"] ?? "") ?? 256) * 1024

    /// Runs the tool from a fresh, small process that forks it: the kernel counts the pages of the process that
    /// execs into the child's peak, so spawning straight from this (large) test process would measure the test
    /// process. Python's own ~10 MiB is the floor of what this can see. Prints "status peakKiB" or "hung peakKiB".
    static let measure = """
        import os, signal, sys, time
        guard, out, argv = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            os.execv(argv[0], argv)
        deadline = time.monotonic() + guard
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == pid:
                print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, _, usage = os.wait4(pid, 0)
                print("hung", usage.ru_maxrss)
                break
            time.sleep(0.001)
        """

    @Test("stored and generated bad inputs, one amtsbote process each")
    func eachInputInItsOwnProcess() throws {
        let badInputs = try #require(TestEnvironment.badInputs, "../shared/bad-inputs is required but missing")
        let generated = try #require(GeneratedBadInputs.directory, "gen_bad_inputs.py big failed")
        // The tool is built against the same libxml2 as this test process.
        let small = BadInputExpectations.small(libxml2: Validator.libxml2Version)
        let cases = small.map { (badInputs.appendingPathComponent($0.key), $0.value) }
            + BadInputExpectations.big.compactMap { name, expected -> (URL, String?)? in
                let url = generated.appendingPathComponent(name)
                return FileManager.default.fileExists(atPath: url.path) ? (url, expected) : nil
            }
        #expect(cases.count >= BadInputExpectations.small.count + 18, "the generator made \(cases.count) files in all")
        let scratch = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let guardSeconds = Double(ProcessInfo.processInfo.environment["AMTSBOTE_TIME_GUARD_SECONDS"] ?? "") ?? 60
        var worst = (kib: 0, name: "")
        for (file, expected) in cases.sorted(by: { $0.0.path < $1.0.path }) {
            let name = file.lastPathComponent
            let output = scratch.appendingPathComponent("out.json")
            let measured = try Fixtures.shell(["python3", "-c", Self.measure, String(guardSeconds), output.path, CLI.binary.path,
                                               "validate", "--format", "json", "--xsd",
                                               badInputs.appendingPathComponent("test.xsd").path, file.path])
            let fields = measured.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            try #require(fields.count == 2, "\(name): \(measured.stdout)")
            #expect(fields[0] != "hung", "\(name) was not decided within \(guardSeconds) s")
            #expect(fields[0] == (expected == nil ? "0" : "1"), "\(name): exit \(fields[0])")
            let peak = Int(fields[1]) ?? 0
            if Self.memoryCeilingKiB > 0 { #expect(peak <= Self.memoryCeilingKiB, "\(name): peak \(peak / 1024) MiB") }
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
