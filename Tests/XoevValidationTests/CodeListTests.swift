import AmtsboteTestSupport
import Foundation
import Testing
@testable import XoevValidation

@Suite("XÖV code lists (genericode) checked while validating")
struct CodeListTests {
    static let ownLists: CodeListCatalog = {
        do { return try CodeListCatalog(directories: [TestEnvironment.projectRoot.appendingPathComponent("Schemas/codelists").path]) }
        catch { fatalError("\(error)") }
    }()

    static func sampleText(_ name: String) throws -> String {
        try String(contentsOfFile: Fixtures.sample("valid", name), encoding: .utf8)
    }

    static func validate(_ text: String, lists: CodeListCatalog) -> ValidationReport {
        Validator(schemas: Fixtures.ownSchemas, codeLists: lists).validate(bytes: Array(text.utf8), named: "doc")
    }

    @Test("the project's own list loads with URI, version, key column and codes")
    func ownListLoads() throws {
        let lists = Self.ownLists
        #expect(lists.loadDiagnostics.isEmpty)
        let list = try #require(lists.lists["urn:xoev-de:amtsbote:codeliste:nachrichtentyp"]?["1.0"])
        #expect(list.values == ["0101", "0201", "0301"])
        #expect(list.keyColumn == "code")
        #expect(list.canonicalVersionUri == "urn:xoev-de:amtsbote:codeliste:nachrichtentyp_1.0")
    }

    @Test("a valid sample stays valid; lists that are not loaded are warned about once per document, or not at all")
    func missingListsArePolicy() throws {
        var lists = Self.ownLists
        let text = try Self.sampleText("hundesteuer-anmeldung-zwei-hunde-hamm.xml")
        let warned = Self.validate(text, lists: lists)
        #expect(warned.verdict == .valid)
        #expect(warned.diagnostics.map(\.code) == ["codelist.unknown-list", "codelist.unknown-list"])
        #expect(warned.diagnostics.allSatisfy { $0.severity == .warning && $0.line > 0 && $0.path.hasSuffix("bas:code") })
        lists.missingLists = .ignore
        #expect(Self.validate(text, lists: lists).diagnostics.isEmpty)
        lists.missingLists = .error
        #expect(Self.validate(text, lists: lists).verdict == .invalid)
    }

    @Test("a code not in its list: error with list, version, line, column and path")
    func valueNotInList() throws {
        var lists = Self.ownLists
        lists.missingLists = .ignore
        let text = try Self.sampleText("hundesteuer-anmeldung-zwei-hunde-hamm.xml")
            .replacingOccurrences(of: "<bas:code>0301</bas:code>", with: "<bas:code> 0399 </bas:code>")
        let report = Self.validate(text, lists: lists)
        #expect(report.verdict == .invalid)
        let finding = try #require(report.errors.first)
        #expect(finding.code == "codelist.value-unknown")
        #expect(finding.message == "the code '0399' is not in the code list urn:xoev-de:amtsbote:codeliste:nachrichtentyp (version 1.0)")
        #expect(finding.line == 8 && finding.column == 18)
        #expect(finding.path == "/hst:hundesteuer.anmeldung.0301/hst:nachrichtenkopf.g2g/bas:identifikation.nachricht/bas:nachrichtentyp/bas:code")
    }

    @Test("versions are data: a document naming an older version is checked against that version; an unknown one is named")
    func versions() throws {
        var lists = Self.ownLists
        lists.missingLists = .ignore
        lists.add(CodeList(canonicalUri: "urn:xoev-de:amtsbote:codeliste:nachrichtentyp", version: "0.9", values: ["0399"]))
        let text = try Self.sampleText("hundesteuer-anmeldung-zwei-hunde-hamm.xml")
        let older = text.replacingOccurrences(of: #"nachrichtentyp" listVersionID="1.0""#, with: #"nachrichtentyp" listVersionID="0.9""#)
        #expect(Self.validate(older.replacingOccurrences(of: "<bas:code>0301</bas:code>", with: "<bas:code>0399</bas:code>"),
                              lists: lists).verdict == .valid)
        #expect(Self.validate(older, lists: lists).errors.map(\.code) == ["codelist.value-unknown"], "0301 is not in 0.9")

        lists.missingLists = .warning
        let unknown = text.replacingOccurrences(of: #"nachrichtentyp" listVersionID="1.0""#, with: #"nachrichtentyp" listVersionID="2.0""#)
        let report = Self.validate(unknown, lists: lists)
        let finding = try #require(report.diagnostics.first { $0.code == "codelist.unknown-version" })
        #expect(finding.severity == .warning)
        #expect(finding.message.hasSuffix("is not loaded in version 2.0; loaded: 0.9, 1.0"))
    }

    @Test("more codes than the check keeps: the rest is reported as not checked, never passed silently")
    func tooManyCodes() throws {
        var lists = Self.ownLists
        lists.missingLists = .ignore
        let code = #"<c listURI="urn:xoev-de:amtsbote:codeliste:nachrichtentyp" listVersionID="1.0"><code>0101</code></c>"#
        let document = "<r>" + String(repeating: code, count: 100_002) + "</r>"
        let report = Validator(schemas: Fixtures.ownSchemas, codeLists: lists).validate(bytes: Array(document.utf8), named: "many")
        let note = try #require(report.diagnostics.first { $0.code == "codelist.truncated" })
        #expect(note.severity == .warning)
        #expect(note.message == "2 codes after the first 100000 were not checked against code lists")
    }

    @Test("broken or hostile genericode files are reported, not loaded, and never crash")
    func brokenFiles() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try "<gc:CodeList xmlns:gc=\"http://docs.oasis-open.org/codelist/ns/genericode/1.0/\"><Identification>"
            .write(to: directory.appendingPathComponent("cut.xml"), atomically: true, encoding: .utf8)
        try #"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>"#
            .write(to: directory.appendingPathComponent("xxe.xml"), atomically: true, encoding: .utf8)
        try "<gc:CodeList xmlns:gc=\"http://docs.oasis-open.org/codelist/ns/genericode/1.0/\"><Identification><Version>1</Version></Identification></gc:CodeList>"
            .write(to: directory.appendingPathComponent("no-uri.xml"), atomically: true, encoding: .utf8)
        try "<other/>".write(to: directory.appendingPathComponent("other.xml"), atomically: true, encoding: .utf8)
        let lists = try CodeListCatalog(directories: [directory.path])
        #expect(lists.count == 0)
        let problems = lists.loadDiagnostics.map { (($0.file ?? "") as NSString).lastPathComponent + ": " + $0.message }
        #expect(problems.count == 3, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("xxe.xml") && $0.contains("DOCTYPE") })
        #expect(problems.contains { $0.hasPrefix("no-uri.xml") && $0.contains("CanonicalUri") })
        #expect(throws: ValidationError.self) { try CodeListCatalog(directories: [directory.appendingPathComponent("none").path]) }
    }
}

@Suite("Code lists on real data (../shared/corpus)", .enabled(if: TestEnvironment.corpusTestsEnabled))
struct CorpusCodeListTests {
    static func corpus() throws -> URL { try #require(TestEnvironment.corpus, "../shared/corpus is required but missing") }

    static func validator(lists: [String]) throws -> Validator {
        let corpus = try corpus()
        var catalog = try CodeListCatalog(directories: lists.map { corpus.appendingPathComponent($0).path })
        catalog.missingLists = .warning
        return Validator(schemas: try CorpusTests.validator.get().schemas, codeLists: catalog)
    }

    static let xdomeaLists = "xoev-xdomea-lath/message_generation/schemes/xdomea_3.0.0/code_lists"
    static let xdomeaMessage = "xoev-xdomea-lath/message_generation/pattern/xdomea_3.0.0/xx_Aussonderung.Aussonderung.0503.xml"

    @Test("every genericode list of the corpus loads (95 xdomea, 2 XBau), by canonical URI and version")
    func corpusListsLoad() throws {
        let corpus = try Self.corpus()
        let catalog = try CodeListCatalog(directories: [
            "xoev-xdomea-lath/message_generation/schemes", "xoev-xbau/artifacts/codelists",
        ].map { corpus.appendingPathComponent($0).path })
        #expect(catalog.loadDiagnostics.filter { $0.code == "codelist.unreadable" }.isEmpty, "\(catalog.loadDiagnostics)")
        #expect(catalog.count >= 60)
        #expect(catalog.lists[CodeListCatalog.dvdvPrefixList]?["51"]?.values.count == 118)
        #expect(catalog.lists["urn:xoev-de:bund:bmi:bit:codeliste:dvdv.behoerdenschluessel"]?["157"]?.values.count == 679)
        #expect(catalog.lists["urn:de:xoev:codeliste:erreichbarkeit"]?["3"]?.values.contains("02") == true)
    }

    @Test("xdomea 3.0.0 messages: the Erreichbarkeit code 002 is not in list version 3 (the published patterns use it)")
    func xdomeaWrongCode() throws {
        let validator = try Self.validator(lists: [Self.xdomeaLists])
        let report = try validator.validate(file: try Self.corpus().appendingPathComponent(Self.xdomeaMessage).path)
        let findings = report.errors.filter { $0.code == "codelist.value-unknown" }
        #expect(findings.map(\.line) == [65, 137])
        #expect(findings.first?.message == "the code '002' is not in the code list urn:de:xoev:codeliste:erreichbarkeit (version 3)")
        #expect(findings.first?.path.hasSuffix("/xdomea:Kanal/code") == true)
    }

    @Test("xdomea: a document naming an unknown list version is told which versions are loaded")
    func xdomeaUnknownVersion() throws {
        let validator = try Self.validator(lists: [Self.xdomeaLists])
        let text = try String(contentsOf: try Self.corpus().appendingPathComponent(Self.xdomeaMessage), encoding: .utf8)
            .replacingOccurrences(of: #"listURI="urn:de:xoev:codeliste:erreichbarkeit" listVersionID="3""#,
                                  with: #"listURI="urn:de:xoev:codeliste:erreichbarkeit" listVersionID="2""#)
        let report = validator.validate(bytes: Array(text.utf8), named: "xdomea-version-2.xml")
        let finding = try #require(report.diagnostics.first { $0.code == "codelist.unknown-version" })
        #expect(finding.line == 65)
        #expect(finding.message == "the code list urn:de:xoev:codeliste:erreichbarkeit is not loaded in version 2; loaded: 3")
        #expect(report.diagnostics.filter { $0.code == "codelist.unknown-version" }.count == 1, "once per list and document")
    }

    @Test("xdomea: a code whose list and version only the schema fixes is checked too")
    func schemaFixedList() throws {
        // xdomea's Nachrichtentyp fixes listURI and listVersionID in the schema; the message leaves them out.
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try """
            <gc:CodeList xmlns:gc="http://docs.oasis-open.org/codelist/ns/genericode/1.0/"><Identification>
            <ShortName>nachrichtentyp</ShortName><Version>2.0</Version>
            <CanonicalUri>urn:xoev-de:xdomea:codeliste:nachrichtentyp</CanonicalUri></Identification>
            <ColumnSet><Column Id="code"><ShortName>code</ShortName><Data Type="string"/></Column>
            <Key Id="k"><ShortName>k</ShortName><ColumnRef Ref="code"/></Key></ColumnSet>
            <SimpleCodeList><Row><Value ColumnRef="code"><SimpleValue>0501</SimpleValue></Value></Row></SimpleCodeList>
            </gc:CodeList>
            """.write(to: directory.appendingPathComponent("nachrichtentyp.xml"), atomically: true, encoding: .utf8)
        var catalog = try CodeListCatalog(directories: [directory.path])
        catalog.missingLists = .ignore
        let validator = Validator(schemas: try CorpusTests.validator.get().schemas, codeLists: catalog)
        let report = try validator.validate(file: try Self.corpus().appendingPathComponent(Self.xdomeaMessage).path)
        let finding = try #require(report.errors.first)
        #expect(finding.code == "codelist.value-unknown")
        #expect(finding.message == "the code '0503' is not in the code list urn:xoev-de:xdomea:codeliste:nachrichtentyp (version 2.0)")
        #expect(finding.line == 11)
    }

    @Test("XBeteiligung: the Behördenkennung prefix xyz of leser and autor is not in the DVDV prefix list")
    func dvdvPrefix() throws {
        var validator = try Self.validator(lists: ["xoev-xbau/artifacts/codelists"])
        validator.codeLists?.missingLists = .ignore
        let file = try Self.corpus().appendingPathComponent("xoev-xbeteiligung/tests/res/example402FromCockpit.xml")
        let report = try validator.validate(file: file.path)
        #expect(report.verdict == .valid, "a warning: the schema accepts the prefix")
        let findings = report.diagnostics.filter { $0.code == "codelist.dvdv-prefix-unknown" }
        #expect(findings.count == 2)
        #expect(findings.map(\.line) == [23, 42])
        #expect(findings.first?.message == "the Behördenkennung prefix 'xyz' is not in the DVDV prefix list (version 51)")
        #expect(findings.first?.path.hasSuffix("/bn-g2g:leser/bn-beh:kennung") == true)
    }

    @Test("XRechnung CII against the coupled code-list schema: 2 of 15 EN 16931 and 10 KoSIT instances fail")
    func ciiCoupled() throws {
        let corpus = try Self.corpus()
        let xsd = corpus.appendingPathComponent(
            "xrechnung/en16931-cen/cii/schema/D16B_SCRDM_Subset/coupled_clm/CII/uncefact/data/standard/CrossIndustryInvoice_100pD16B.xsd")
        let validator = Validator(schemas: try SchemaSet(xsd: xsd.path, allowedRoot: corpus.appendingPathComponent("xrechnung").path))
        func failing(_ folder: String, suffix: String) throws -> (failed: Int, total: Int) {
            let files = try CorpusTests.files(folder, suffix: suffix)
            let failed = try files.filter { try !validator.validate(file: $0.path).isValid }
            return (failed.count, files.count)
        }
        let examples = try failing("xrechnung/en16931-cen/cii/examples", suffix: ".xml")
        #expect(examples.total == 15 && examples.failed == 2, "\(examples)")
        let kosit = try failing("xrechnung/kosit-testsuite", suffix: "_uncefact.xml")
        #expect(kosit.failed == 10, "\(kosit)")
    }
}
