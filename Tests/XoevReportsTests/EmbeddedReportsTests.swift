import AmtsboteTestSupport
import Foundation
import Testing
import XoevReports
import XoevValidation

/// The reports as an embedding tool uses them: a validator, outcomes, and reporters writing into its own buffer.
@Suite("XoevReports for embedders")
struct EmbeddedReportsTests {
    static func outcomes() throws -> [Outcome] {
        let validator = Validator(schemas: try SchemaSet(manifestAt: TestEnvironment.projectRoot.appendingPathComponent("Schemas").path))
        let root = TestEnvironment.projectRoot.appendingPathComponent("Samples")
        return [
            .report(try validator.validate(file: root.appendingPathComponent("valid/wohnsitz-anmeldung-koeln.xml").path)),
            .report(try validator.validate(file: root.appendingPathComponent("invalid/gewerbe-ohne-betrieb.xml").path)),
            .unreadable(document: "missing.xml", code: "input.unreadable", message: "No such file or directory"),
        ]
    }

    static func run(_ reporter: inout some Reporter, _ outcomes: [Outcome]) {
        var tally = Tally()
        for outcome in outcomes {
            reporter.write(outcome)
            tally.count(outcome)
        }
        reporter.finish(tally)
    }

    @Test("text, JSON Lines, JUnit and SARIF into a buffer of the caller's")
    func reportsIntoBuffers() throws {
        let outcomes = try Self.outcomes()
        let text = TextBuffer(), json = TextBuffer(), junit = TextBuffer(), sarif = TextBuffer()
        var textReporter = TextReporter(output: text)
        Self.run(&textReporter, outcomes)
        #expect(text.text.hasSuffix("3 documents: 1 valid, 1 invalid, 1 unreadable\n"), "\(text.text)")
        #expect(text.text.contains("error[schema.element.unexpected]"))
        var jsonReporter = JSONLinesReporter(output: json)
        Self.run(&jsonReporter, outcomes)
        let lines = json.text.split(separator: "\n")
        #expect(lines.count == 3)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(first["status"] as? String == "valid")
        var junitReporter = JUnitReporter(output: junit)
        Self.run(&junitReporter, outcomes)
        #expect(junit.text.contains(#"<testsuites name="amtsbote validate" tests="3" failures="1" errors="1""#), "\(junit.text.prefix(300))")
        var sarifReporter = SARIFReporter(output: sarif)
        Self.run(&sarifReporter, outcomes)
        let log = try #require(try JSONSerialization.jsonObject(with: Data(sarif.text.utf8)) as? [String: Any])
        #expect(log["version"] as? String == "2.1.0")
        #expect(DiagnosticCatalog.byCode["schema.element.unexpected"] != nil)
    }
}
