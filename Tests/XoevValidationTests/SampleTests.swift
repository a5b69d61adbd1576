import AmtsboteTestSupport
import Foundation
import Testing
@testable import XoevValidation

@Suite("Own samples against own schemas")
struct SampleTests {
    @Test("the schema set loads without findings")
    func schemaSetLoadsCleanly() {
        let set = Fixtures.ownSchemas
        #expect(set.loadDiagnostics.isEmpty, "\(set.loadDiagnostics)")
        #expect(set.entries.count == 3)
        #expect(set.entries.allSatisfy { $0.isUsable })
    }

    @Test("valid samples are valid", arguments: Fixtures.samples("valid"))
    func validSample(name: String) throws {
        let report = try Validator(schemas: Fixtures.ownSchemas).validate(file: Fixtures.sample("valid", name))
        #expect(report.verdict == .valid, "\(Fixtures.render(report.diagnostics))")
        #expect(report.diagnostics.isEmpty)
        #expect(report.schema != nil)
        #expect(report.bytes > 0)
    }

    @Test("invalid samples give the golden findings", arguments: Fixtures.samples("invalid"))
    func invalidSample(name: String) throws {
        let report = try Validator(schemas: Fixtures.ownSchemas).validate(file: Fixtures.sample("invalid", name))
        #expect(report.verdict == .invalid)
        #expect(!report.errors.isEmpty)
        let rendered = Fixtures.render(report.diagnostics)
        let goldenName = (name as NSString).deletingPathExtension + ".txt"
        let goldenSource = TestEnvironment.projectRoot
            .appendingPathComponent("Tests/XoevValidationTests/Golden/\(goldenName)")
        if ProcessInfo.processInfo.environment["AMTSBOTE_UPDATE_GOLDEN"] == "1" {
            try rendered.write(to: goldenSource, atomically: true, encoding: .utf8)
        }
        let golden = try String(contentsOf: goldenSource, encoding: .utf8)
        #expect(rendered == golden)
    }

    @Test("routing keys are captured while validating, the first occurrence of each path")
    func captures() throws {
        let report = try Validator(schemas: Fixtures.ownSchemas).validate(file: Fixtures.sample("valid", "wohnsitz-anmeldung-familie-hanau.xml"))
        #expect(report.captured == [
            "messageId": "7a1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "behoerdenkennungPraefix": "mel",
            "behoerdenkennung": "06415000", "leistung": "99115001001000", "ags": "06415000",
        ])
        let invalid = try Validator(schemas: Fixtures.ownSchemas).validate(file: Fixtures.sample("invalid", "mit-doctype.xml"))
        #expect(invalid.captured.isEmpty)
    }

    @Test("every invalid sample has a golden file and every golden file a sample")
    func goldenFilesMatchSamples() throws {
        let golden = try FileManager.default.contentsOfDirectory(
            atPath: TestEnvironment.projectRoot.appendingPathComponent("Tests/XoevValidationTests/Golden").path)
        let expected = Fixtures.samples("invalid").map { ($0 as NSString).deletingPathExtension + ".txt" }
        #expect(Set(golden) == Set(expected))
    }

    @Test("a document fed one byte at a time gives the same report as the whole file")
    func chunkBoundariesDoNotMatter() throws {
        let validator = Validator(schemas: Fixtures.ownSchemas)
        for (folder, name) in [("valid", "wohnsitz-anmeldung-familie-hanau.xml"),
                               ("invalid", "hundesteuer-doppelte-chipnummer.xml"),
                               ("invalid", "nicht-wohlgeformt.xml")] {
            let path = Fixtures.sample(folder, name)
            let whole = try validator.validate(file: path)
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            let document = validator.startDocument(named: path)
            for byte in bytes where document.feed([byte]) { break }
            let trickled = document.finish()
            #expect(trickled == whole, "\(name)")
        }
    }
}
