import AmtsboteTestSupport
import Foundation
import Testing
import XoevValidation

/// Real published schemas and messages (../shared/corpus), with the verdicts its MANIFEST.md gives.
@Suite("Real-world corpus", .enabled(if: TestEnvironment.corpusTestsEnabled))
struct CorpusTests {
    /// Samples/corpus-schemas.json with its base directory pointed at the corpus actually found.
    static let validator: Result<Validator, any Error> = Result {
        let corpus = try #require(TestEnvironment.corpus, "../shared/corpus is required (AMTSBOTE_REQUIRE_CORPUS=1) but missing")
        let manifestPath = TestEnvironment.projectRoot.appendingPathComponent("Samples/corpus-schemas.json").path
        var (manifest, directory) = try SchemaManifest.load(from: manifestPath)
        manifest.baseDirectory = corpus.path
        return Validator(schemas: try SchemaSet(manifest: manifest, relativeTo: directory))
    }

    static func files(_ relative: String, suffix: String = ".xml") throws -> [URL] {
        let corpus = try #require(TestEnvironment.corpus)
        let root = corpus.appendingPathComponent(relative)
        let all = FileManager.default.enumerator(atPath: root.path)?.compactMap { $0 as? String } ?? []
        return all.filter { $0.lowercased().hasSuffix(suffix) }.sorted().map { root.appendingPathComponent($0) }
    }

    static func expectAllValid(_ files: [URL], count: Int, schema: String? = nil) throws {
        let validator = try Self.validator.get()
        #expect(files.count == count)
        for file in files {
            let report = try validator.validate(file: file.path)
            #expect(report.verdict == .valid, "\(file.lastPathComponent): \(report.errors.prefix(3))")
            if let schema { #expect(report.schema == schema, "\(file.lastPathComponent)") }
        }
    }

    @Test("the corpus schema set compiles through the catalog, offline")
    func schemaSetCompiles() throws {
        let validator = try Self.validator.get()
        #expect(validator.schemas.entries.allSatisfy { $0.isUsable })
        #expect(validator.schemas.loadDiagnostics.filter { $0.severity >= .error }.isEmpty)
    }

    @Test("XBeteiligung 1.2: all 6 messages valid")
    func xbeteiligung() throws {
        try Self.expectAllValid(try Self.files("xoev-xbeteiligung/tests/res"), count: 6, schema: "xbeteiligung-1.2")
    }

    @Test("XÖV header keys are captured in the validation pass with the default capture paths")
    func xbeteiligungCaptures() throws {
        let validator = try Self.validator.get()
        let corpus = try #require(TestEnvironment.corpus)
        let report = try validator.validate(file: corpus.appendingPathComponent("xoev-xbeteiligung/tests/res/example402FromCockpit.xml").path)
        #expect(report.captured == ["messageId": "f4d3b213-1ce1-4ec5-a7b1-763ca250dcf1", "behoerdenkennung": "xyz:0002"])
    }

    @Test("XBau 2.6 via xbau-baukasten.xsd: the namespace libxml2 would half-load is merged, and universellerAntrag works")
    func xbauImportMerge() throws {
        let validator = try Self.validator.get()
        let merged = validator.schemas.loadDiagnostics.filter { $0.code == "schema.imports-merged" }
        #expect(merged.count == 1)
        #expect(merged.first?.message.contains("http://www.xleitstelle.de/xbau/kernmodul/1/3/0") == true)
        #expect(merged.first?.message.contains("xbau-kernmodul-universellerAntrag.xsd") == true)
        #expect(merged.first?.file?.hasSuffix("xbau-baukasten.xsd") == true && merged.first?.line == 41)
        #expect(!validator.schemas.loadDiagnostics.contains { $0.code == "schema.import-skipped" })
        let samples = TestEnvironment.projectRoot.appendingPathComponent("Tests/Fixtures/xbau-2.6")
        let valid = try validator.validate(file: samples.appendingPathComponent("universellerAntrag.antrag.1200-valid.xml").path)
        #expect(valid.verdict == .valid, "\(valid.errors)")
        #expect(valid.schema == "xbau-2.6-kernmodul")
        let invalid = try validator.validate(file: samples.appendingPathComponent("universellerAntrag.antrag.1200-invalid.xml").path)
        #expect(invalid.verdict == .invalid)
        let first = try #require(invalid.errors.first)
        #expect(first.code == "schema.element.unexpected" && first.line == 36)
        #expect(first.path == "/xbauk:universellerAntrag.antrag.1200/grundstueck")
        #expect(first.message.contains("antragsteller"))
    }

    @Test("xdomea 2.3.0, 2.4.0, 3.0.0: all 12 messages valid against their version's schema")
    func xdomea() throws {
        let files = try Self.files("xoev-xdomea-lath/message_generation/pattern")
        try Self.expectAllValid(files, count: 12)
        let validator = try Self.validator.get()
        for file in files {
            let version = file.deletingLastPathComponent().lastPathComponent.replacingOccurrences(of: "_", with: "-")
            #expect(try validator.validate(file: file.path).schema == version)
        }
    }

    @Test("xdomea LAV NRW: 3.0.0 valid, 4.0.0 has no schema and says which namespaces are known")
    func xdomeaVersions() throws {
        let validator = try Self.validator.get()
        let files = try Self.files("xoev-xdomea-lavnrw")
        #expect(files.count == 2)
        for file in files {
            let report = try validator.validate(file: file.path)
            if file.path.contains("v3.0.0") {
                #expect(report.verdict == .valid, "\(report.errors)")
            } else {
                let finding = try #require(report.errors.first)
                #expect(finding.code == "schema.unknown-document")
                #expect(finding.message.contains("urn:xoev-de:xdomea:schema:4.0.0"))
                #expect(finding.message.contains("urn:xoev-de:xdomea:schema:3.0.0"))
                #expect(finding.line == 2)
            }
        }
    }

    @Test("XRechnung test suite: all 86 instances valid (UBL 2.1, CII uncoupled)")
    func xrechnungTestSuite() throws {
        let files = try Self.files("xrechnung/kosit-testsuite/src/test")
        try Self.expectAllValid(files, count: 86)
    }

    @Test("EN 16931 examples: UBL 19/19 and CII 15/15 valid")
    func en16931Examples() throws {
        try Self.expectAllValid(try Self.files("xrechnung/en16931-cen/ubl/examples"), count: 19)
        try Self.expectAllValid(try Self.files("xrechnung/en16931-cen/cii/examples"), count: 15, schema: "cii-d16b-uncoupled")
    }

    @Test("KoSIT validator examples: 6 valid, 2 invalid, 2 not well-formed; the XXE sample refused")
    func kositExamples() throws {
        let validator = try Self.validator.get()
        let corpus = try #require(TestEnvironment.corpus)
        let input = corpus.appendingPathComponent("invalid-xml/kosit-validator-tests/src/test/resources/examples/simple/input")
        let expected: [String: String?] = [
            "simple.xml": nil, "foo.xml": nil, "foo-schematron-invalid.xml": nil,
            "foo-custom-level-error.xml": nil, "simple-schematron-invalid.xml": nil, "withManualReject.xml": nil,
            "simple-schema-invalid.xml": "schema.element.unexpected", "unknown.xml": "schema.unknown-document",
            "simple-not-wellformed.xml": "xml.truncated", "no-xml.file": "xml.empty",
        ]
        let present = try FileManager.default.contentsOfDirectory(atPath: input.path)
        #expect(Set(present) == Set(expected.keys))
        for (name, code) in expected {
            let report = try validator.validate(file: input.appendingPathComponent(name).path)
            if let code {
                #expect(report.verdict == .invalid, "\(name)")
                #expect(report.errors.first?.code == code, "\(name): \(report.errors)")
            } else {
                #expect(report.verdict == .valid, "\(name): \(report.errors)")
            }
        }
        let xxe = try validator.validate(file: corpus
            .appendingPathComponent("invalid-xml/kosit-validator-tests/src/test/resources/evil/xxe.xml").path)
        #expect(xxe.verdict == .invalid)
    }

    @Test("defusedxml attack files are all refused")
    func defusedAttacks() throws {
        let validator = try Self.validator.get()
        let files = try Self.files("invalid-xml/defusedxml-attacks")
        #expect(!files.isEmpty)
        for file in files {
            let report = try validator.validate(file: file.path)
            #expect(report.verdict == .invalid, "\(file.lastPathComponent)")
        }
    }
}
