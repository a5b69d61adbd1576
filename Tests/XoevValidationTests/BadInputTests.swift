import AmtsboteTestSupport
import Foundation
import Testing
import XoevValidation

@Suite("Hostile and broken inputs (../shared/bad-inputs)", .enabled(if: TestEnvironment.badInputTestsEnabled))
struct BadInputTests {
    static func badInputs() throws -> URL {
        try #require(TestEnvironment.badInputs, "../shared/bad-inputs is required (AMTSBOTE_REQUIRE_CORPUS=1) but missing")
    }

    static func validator(_ badInputs: URL) throws -> Validator {
        Validator(schemas: try SchemaSet(xsd: badInputs.appendingPathComponent("test.xsd").path))
    }

    /// Checks one file: the expected verdict and code, a bounded time, and no external load attempted.
    static func check(_ file: URL, expected: String?, validator: Validator) throws {
        // Counted on this thread: other tests run at the same time, and some make a refused load on purpose.
        let refusedBefore = Validator.refusedExternalLoadsOnThisThread
        let started = ContinuousClock.now
        let report = try validator.validate(file: file.path)
        let elapsed = ContinuousClock.now - started
        let name = file.lastPathComponent
        if let expected {
            #expect(report.verdict == .invalid, "\(name) must be refused")
            #expect(report.errors.contains { $0.code == expected },
                    "\(name): expected \(expected), got \(report.errors.map(\.code))")
            #expect(report.errors.allSatisfy { $0.line > 0 }, "\(name): every refusal names a line")
        } else {
            #expect(report.verdict == .valid, "\(name) must be accepted: \(report.diagnostics)")
        }
        // A guard against hangs (a minute), generous enough for a slow or loaded machine (raise it for sanitizer builds with
        // AMTSBOTE_TIME_GUARD_SECONDS); speed is measured in scripts/bench, not here.
        let guardSeconds = Int(ProcessInfo.processInfo.environment["AMTSBOTE_TIME_GUARD_SECONDS"] ?? "") ?? 60
        #expect(elapsed < .seconds(guardSeconds), "\(name) took \(elapsed)")
        #expect(Validator.refusedExternalLoadsOnThisThread == refusedBefore, "\(name) made the parser ask for an external resource")
    }

    @Test("the expectation table covers the catalogue")
    func tableCoversCatalogue() throws {
        let catalogue = try String(contentsOf: try Self.badInputs().appendingPathComponent("catalogue.tsv"), encoding: .utf8)
        let stored = try FileManager.default.contentsOfDirectory(atPath: try Self.badInputs().path)
            .filter { $0.hasSuffix(".xml") || $0.hasSuffix(".xml.gz") }
        #expect(Set(stored) == Set(BadInputExpectations.small.keys))
        for line in catalogue.split(separator: "\n").dropFirst() {
            let file = String(line.split(separator: "\t")[0])
            if file.hasPrefix("19a..") || file.contains(" / ") { continue }
            #expect(BadInputExpectations.small[file] != nil || BadInputExpectations.big[file] != nil, "\(file)")
        }
    }

    @Test("stored inputs: refused or accepted as the catalogue says, nothing fetched",
          .enabled(if: TestEnvironment.canRun(LoopbackCanary.available), LoopbackCanary.unavailableReason))
    func storedInputs() throws {
        let badInputs = try Self.badInputs()
        let validator = try Self.validator(badInputs)
        let canary = try LoopbackCanary.forTest()
        let fetchesBefore = canary.requestCount
        let expectations = BadInputExpectations.small(libxml2: Validator.libxml2Version)
        for (name, expected) in expectations.sorted(by: { $0.key < $1.key }) {
            try Self.check(badInputs.appendingPathComponent(name), expected: expected, validator: validator)
        }
        #expect(canary.requestCount == fetchesBefore, "the loopback canary was contacted")
    }

    @Test("generated large inputs (gen_bad_inputs.py big --skip-500mb; the 500 MB text is streamed below instead)",
          .enabled(if: TestEnvironment.canRun(LoopbackCanary.available), LoopbackCanary.unavailableReason))
    func generatedInputs() throws {
        let badInputs = try Self.badInputs()
        let directory = try #require(GeneratedBadInputs.directory, "gen_bad_inputs.py big failed")
        let validator = try Self.validator(badInputs)
        let canary = try LoopbackCanary.forTest()
        let fetchesBefore = canary.requestCount
        let generated = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(generated.count >= 18)
        for name in generated {
            let expected = try #require(BadInputExpectations.big[name], "no expectation for \(name)")
            try Self.check(directory.appendingPathComponent(name), expected: expected, validator: validator)
        }
        #expect(canary.requestCount == fetchesBefore, "the loopback canary was contacted")
    }

    @Test("entity substitution switched on process-wide (as other libraries may) changes nothing",
          .enabled(if: TestEnvironment.canRun(LoopbackCanary.available), LoopbackCanary.unavailableReason))
    func processWideEntitySubstitution() throws {
        let badInputs = try Self.badInputs()
        let validator = try Self.validator(badInputs)
        let previous = Validator.setProcessEntitySubstitutionDefault(true)
        defer { Validator.setProcessEntitySubstitutionDefault(previous) }
        let canary = try LoopbackCanary.forTest()
        let fetchesBefore = canary.requestCount
        for name in BadInputExpectations.small.keys.sorted() where name.hasPrefix("0") {
            try Self.check(badInputs.appendingPathComponent(name), expected: BadInputExpectations.small[name]!, validator: validator)
        }
        #expect(canary.requestCount == fetchesBefore)
    }

    @Test("a document over the time limit ends as input.timeout; the next one is unaffected")
    func timeLimit() throws {
        let badInputs = try Self.badInputs()
        let schemas = try SchemaSet(xsd: badInputs.appendingPathComponent("test.xsd").path)
        let validator = Validator(schemas: schemas, limits: ValidationLimits(timeLimit: .milliseconds(20)))
        // A document that arrives slowly: its second part comes only after the limit has passed for certain
        // (the wait is a lower bound, so a slow machine only makes it longer).
        let document = validator.startDocument(named: "slow")
        let head = #"<antrag xmlns="urn:example:xoev-lab:1"><gemeindeschluessel>09162000</gemeindeschluessel>"#
            + "<antragsdatum>2024-05-01</antragsdatum><betrag>1</betrag><name>x</name>"
            + (1...100).map { "<kennung>\($0)</kennung>" }.joined()   // past the 512 bytes held back at the start
        #expect(!document.feed(Array(head.utf8)), "the first part is within the limit")
        usleep(60_000)
        #expect(document.feed(Array("<kennung>101</kennung></antrag>".utf8)), "the next part after the limit stops it")
        let report = document.finish()
        let finding = try #require(report.errors.first { $0.code == "input.timeout" })
        #expect(report.verdict == .invalid)
        #expect(finding.line == 1 && finding.path.hasPrefix("/antrag"), "\(finding)")
        let next = try validator.validate(file: badInputs.appendingPathComponent("00-valid-control.xml").path)
        #expect(next.isValid)
    }

    @Test("a 500 MB text node streamed in is refused after about 10 MB, never read whole")
    func hugeTextIsRefusedEarly() throws {
        let validator = try Self.validator(try Self.badInputs())
        let document = validator.startDocument(named: "stream")
        #expect(!document.feed(Array(#"<antrag xmlns="urn:example:xoev-lab:1"><name>"#.utf8)))
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        var fed = 0
        while fed < 500, !document.feed(chunk) { fed += 1 }
        #expect(fed <= 11, "stopped after \(fed) MiB")
        let report = document.finish()
        #expect(report.errors.map(\.code).contains("input.text-too-long"))
        #expect(report.verdict == .invalid)
    }
}
