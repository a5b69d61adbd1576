import AmtsboteTestSupport
import Foundation
import Testing
import XoevValidation

@Suite("Schema sets: manifests, selection, load-time findings")
struct SchemaSetTests {
    static func write(_ files: [String: String]) throws -> URL {
        let directory = try TestEnvironment.temporaryDirectory()
        for (name, text) in files {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return directory
    }

    static let simpleXSD = """
        <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t:1" xmlns:t="urn:t:1"
                   elementFormDefault="qualified">
          <xs:element name="antrag"><xs:complexType><xs:sequence>
            <xs:element name="wert" type="xs:int"/>
          </xs:sequence><xs:attribute name="version" type="xs:string"/></xs:complexType></xs:element>
        </xs:schema>
        """

    static let remoteImport: [String: String] = [
        "main.xsd": """
            <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t:1">
              <xs:import namespace="urn:remote:1"
                         schemaLocation="http://127.0.0.1:9/remote.xsd"/>
              <xs:element name="a" type="xs:string"/>
            </xs:schema>
            """,
        "amtsbote-schemas.json": #"{"schemas": [{"id": "t", "xsd": "main.xsd", "namespace": "urn:t:1"}]}"#,
    ]

    @Test("an import location outside catalog and schema set is reported at load time with file and line")
    func unresolvableImport() throws {
        let directory = try Self.write(Self.remoteImport)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: ValidationError.self) { try SchemaSet(manifestAt: directory.path) }
        do {
            _ = try SchemaSet(manifestAt: directory.path)
        } catch let error as ValidationError {
            #expect(error.code == .noUsableSchema)
            #expect(error.file.hasSuffix("main.xsd"))
            #expect(error.message.contains("line 3"))
            #expect(error.message.contains("http://127.0.0.1:9/remote.xsd"))
        }
    }

    @Test("an import location outside catalog and schema set is never fetched (loopback canary)",
          .enabled(if: TestEnvironment.canRun(LoopbackCanary.available), LoopbackCanary.unavailableReason))
    func unresolvableImportNotFetched() throws {
        let directory = try Self.write(Self.remoteImport)
        defer { try? FileManager.default.removeItem(at: directory) }
        let canary = try LoopbackCanary.forTest()
        let fetchesBefore = canary.requestCount
        _ = try? SchemaSet(manifestAt: directory.path)
        #expect(canary.requestCount == fetchesBefore, "the schema import was fetched")
    }

    @Test("a relative include that climbs out of the schema set is refused")
    func includeOutsideRootRefused() throws {
        let directory = try Self.write([
            "set/main.xsd": """
                <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t:1">
                  <xs:include schemaLocation="../outside.xsd"/>
                </xs:schema>
                """,
            "outside.xsd": #"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t:1"/>"#,
            "set/amtsbote-schemas.json": #"{"schemas": [{"id": "t", "xsd": "main.xsd", "namespace": "urn:t:1"}]}"#,
        ])
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(throws: ValidationError.self) { try SchemaSet(manifestAt: directory.appendingPathComponent("set").path) }
    }

    /// A set of two schemas: `good` for urn:t:1, `bad` (an undefined type, line 1) for documents without a namespace.
    static let goodAndBroken = [
        "good.xsd": simpleXSD,
        "bad.xsd": #"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="x" type="nope"/></xs:schema>"#,
        "amtsbote-schemas.json": """
            {"schemas": [{"id": "good", "xsd": "good.xsd", "namespace": "urn:t:1"},
                         {"id": "bad", "xsd": "bad.xsd", "namespace": ""}]}
            """,
    ]

    @Test("one broken schema does not take the others down")
    func brokenSchemaIsolated() throws {
        let directory = try Self.write(Self.goodAndBroken)
        defer { try? FileManager.default.removeItem(at: directory) }
        let set = try SchemaSet(manifestAt: directory.path)
        // Compiled at start: the broken schema's error is known before any document asks for it.
        let finding = try #require(set.loadDiagnostics.first { $0.severity >= .error })
        #expect(set.entries.map(\.isUsable) == [true, false])
        #expect(finding.file?.hasSuffix("bad.xsd") == true)
        #expect(finding.line == 1)
        let validator = Validator(schemas: set)
        #expect(validator.validate(bytes: Array(#"<antrag xmlns="urn:t:1"><wert>1</wert></antrag>"#.utf8), named: "a").isValid)
        let orphan = validator.validate(bytes: Array("<x>1</x>".utf8), named: "b")
        #expect(orphan.errors.first?.code == "schema.unavailable")
    }

    @Test("compiled on first use: a schema no document selects is never compiled; a broken one is named when selected")
    func compiledOnFirstUse() async throws {
        let directory = try Self.write(Self.goodAndBroken)
        defer { try? FileManager.default.removeItem(at: directory) }
        let set = try SchemaSet(manifestAt: directory.path, compilation: .onFirstUse)
        #expect(set.loadDiagnostics.isEmpty, "nothing compiled yet")
        let validator = Validator(schemas: set)
        let document = Array(#"<antrag xmlns="urn:t:1"><wert>1</wert></antrag>"#.utf8)
        // Documents at once wait for the one compilation.
        let verdicts = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<16 { group.addTask { validator.validate(bytes: document, named: "a\(i)").isValid } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(verdicts.allSatisfy { $0 })
        #expect(set.loadDiagnostics.isEmpty, "the broken schema was not compiled: no document selected it")
        let orphan = validator.validate(bytes: Array("<x>1</x>".utf8), named: "b")
        let refusal = try #require(orphan.errors.first)
        #expect(refusal.code == "schema.unavailable")
        #expect(refusal.message.contains("line 1:"), "the refusal names the compile error: \(refusal.message)")
        let finding = try #require(set.loadDiagnostics.first { $0.severity >= .error })
        #expect(finding.file?.hasSuffix("bad.xsd") == true)
        #expect(set.entries.map(\.isUsable) == [true, false])
    }

    static func namespaceSplit(secondDeclares second: String) -> [String: String] {
        let xs = #"xmlns:xs="http://www.w3.org/2001/XMLSchema""#
        return [
            "main.xsd": """
                <xs:schema \(xs) xmlns:n="urn:t:n" targetNamespace="urn:t:a" elementFormDefault="qualified">
                  <xs:import namespace="urn:t:n" schemaLocation="n1.xsd"/>
                  <xs:import namespace="urn:t:n" schemaLocation="n2.xsd"/>
                  <xs:element name="doc"><xs:complexType><xs:sequence>
                    <xs:element ref="n:x"/><xs:element ref="n:\(second == "y" ? "y" : "x")" minOccurs="0"/>
                  </xs:sequence></xs:complexType></xs:element>
                </xs:schema>
                """,
            "n1.xsd": #"<xs:schema \#(xs) targetNamespace="urn:t:n"><xs:element name="x" type="xs:int"/></xs:schema>"#,
            "n2.xsd": #"<xs:schema \#(xs) targetNamespace="urn:t:n"><xs:element name="\#(second)" type="xs:int"/></xs:schema>"#,
            "amtsbote-schemas.json": #"{"schemas": [{"id": "a", "xsd": "main.xsd", "namespace": "urn:t:a"}]}"#,
        ]
    }

    @Test("a namespace imported from two documents: compiled together, even where the first compile fails without it")
    func importsMerged() throws {
        let directory = try Self.write(Self.namespaceSplit(secondDeclares: "y"))
        defer { try? FileManager.default.removeItem(at: directory) }
        let set = try SchemaSet(manifestAt: directory.path)
        #expect(set.entries.map(\.isUsable) == [true])
        #expect(set.loadDiagnostics.map(\.code) == ["schema.imports-merged"], "the first compile's errors are not reported")
        let note = try #require(set.loadDiagnostics.first)
        #expect(note.severity == .warning && note.file?.hasSuffix("main.xsd") == true && note.line == 3)
        #expect(note.message.contains("'urn:t:n' is declared in 2 documents"))
        let validator = Validator(schemas: set)
        let valid = #"<doc xmlns="urn:t:a" xmlns:n="urn:t:n"><n:x>1</n:x><n:y>2</n:y></doc>"#
        #expect(validator.validate(bytes: Array(valid.utf8), named: "v").isValid)
        let invalid = valid.replacingOccurrences(of: "<n:y>2</n:y>", with: "<n:y>zwei</n:y>")
        #expect(validator.validate(bytes: Array(invalid.utf8), named: "i").errors.map(\.code) == ["schema.value.type"])
    }

    @Test("when compiling a namespace's documents together fails, the first result stays and the skip is reported")
    func importsMergeFails() throws {
        let directory = try Self.write(Self.namespaceSplit(secondDeclares: "x"))
        defer { try? FileManager.default.removeItem(at: directory) }
        let set = try SchemaSet(manifestAt: directory.path)
        #expect(set.entries.map(\.isUsable) == [true])
        let note = try #require(set.loadDiagnostics.first { $0.code == "schema.import-skipped" })
        #expect(note.severity == .warning && note.line == 3)
        #expect(note.message.contains("compiling them together failed"), "\(note.message)")
        #expect(Validator(schemas: set).validate(bytes: Array(#"<doc xmlns="urn:t:a" xmlns:n="urn:t:n"><n:x>1</n:x></doc>"#.utf8),
                                                 named: "v").isValid)
    }

    @Test("selection by version attribute; a mismatch names both versions")
    func versionSelection() throws {
        let directory = try Self.write([
            "t.xsd": Self.simpleXSD,
            "amtsbote-schemas.json": """
                {"schemas": [{"id": "t-1.1", "xsd": "t.xsd", "namespace": "urn:t:1", "roots": ["antrag"], "version": "1.1"},
                             {"id": "t-1.2", "xsd": "t.xsd", "namespace": "urn:t:1", "roots": ["antrag"], "version": "1.2"}]}
                """,
        ])
        defer { try? FileManager.default.removeItem(at: directory) }
        let validator = Validator(schemas: try SchemaSet(manifestAt: directory.path))
        let v12 = validator.validate(bytes: Array(#"<antrag xmlns="urn:t:1" version="1.2"><wert>1</wert></antrag>"#.utf8), named: "a")
        #expect(v12.schema == "t-1.2")
        #expect(v12.isValid)
        let v20 = validator.validate(bytes: Array(#"<antrag xmlns="urn:t:1" version="2.0"><wert>1</wert></antrag>"#.utf8), named: "b")
        let finding = try #require(v20.errors.first)
        #expect(finding.code == "schema.version-mismatch")
        #expect(finding.message.contains("2.0") && finding.message.contains("1.1") && finding.message.contains("1.2"))
        #expect(finding.line == 1 && finding.path == "/antrag")
        let other = validator.validate(bytes: Array(#"<other xmlns="urn:other"/>"#.utf8), named: "c")
        #expect(other.errors.first?.code == "schema.unknown-document")
        #expect(other.errors.first?.message.contains("known namespaces: urn:t:1") == true)
    }

    @Test("manifest errors name the file and the problem", arguments: [
        (#"{"schemas": [{"xsd": "a.xsd", "namespace": ""}]}"#, "missing key 'id'"),
        (#"{"format": "other/9", "schemas": []}"#, "unknown manifest format"),
        (#"{"schemas": [{"id": "a", "xsd": "a.xsd", "namespace": ""}, {"id": "a", "xsd": "b.xsd", "namespace": ""}]}"#, "appears twice"),
        ("not json", "not a valid manifest"),
    ])
    func manifestErrors(text: String, expected: String) throws {
        let directory = try Self.write(["amtsbote-schemas.json": text])
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            _ = try SchemaSet(manifestAt: directory.path)
            Issue.record("the manifest must be refused")
        } catch let error as ValidationError {
            #expect(error.code == .manifestInvalid)
            #expect(error.message.contains(expected), "\(error.message)")
            #expect(error.file.hasSuffix("amtsbote-schemas.json"))
        }
    }

    @Test("the attribute pre-scan skips comments, CDATA and PIs, also when split across chunks")
    func prescanSkipsNonTags() throws {
        let fake = "<x " + (0..<300).map { "a\($0)=\"v\"" }.joined(separator: " ") + ">"
        let directory = try Self.write(["t.xsd": Self.simpleXSD])
        defer { try? FileManager.default.removeItem(at: directory) }
        let validator = Validator(schemas: try SchemaSet(xsd: directory.appendingPathComponent("t.xsd").path))
        let hidden = """
            <?xml version="1.0" encoding="UTF-8"?>
            <!-- \(fake) - still a comment ->->- -->
            <?pi \(fake) ?>
            <antrag xmlns="urn:t:1" version="1"><!-- \(fake) --><wert><![CDATA[ \(fake) ]]>1</wert><?p \(fake)?></antrag>
            """
        let bytes = Array(hidden.utf8)
        let real = Array(("<antrag xmlns=\"urn:t:1\">\n" + fake + "</x></antrag>").utf8)
        for chunk in [bytes.count, 1, 2, 3, 7] {
            for (document, expectValid) in [(bytes, true), (real, false)] {
                let validation = validator.startDocument(named: "c")
                var offset = 0
                while offset < document.count {
                    if validation.feed(Array(document[offset..<min(offset + chunk, document.count)])) { break }
                    offset += chunk
                }
                let report = validation.finish()
                if expectValid {
                    // Well-formed and not refused by a limit (the CDATA text makes the int invalid, on purpose).
                    #expect(report.errors.map(\.code) == ["schema.value.type"], "chunk \(chunk)")
                } else {
                    let finding = report.errors.first { $0.code == "input.too-many-attributes" }
                    #expect(finding?.line == 2, "chunk \(chunk): \(report.diagnostics)")
                }
            }
        }
    }

    @Test("limits: depth, attributes and size are enforced with their own codes and a place")
    func limits() throws {
        let schemas = Fixtures.ownSchemas
        let deep = String(repeating: "<a>", count: 40) + String(repeating: "</a>", count: 40)
        let depth = Validator(schemas: schemas, limits: ValidationLimits(maxDepth: 32)).validate(bytes: Array(deep.utf8), named: "d")
        #expect(depth.errors.map(\.code).contains("input.too-deep"))
        let attributes = "<a " + (0..<20).map { "x\($0)=\"1\"" }.joined(separator: " ") + "/>"
        let wide = Validator(schemas: schemas, limits: ValidationLimits(maxAttributes: 10)).validate(bytes: Array(attributes.utf8), named: "w")
        let finding = try #require(wide.errors.first { $0.code == "input.too-many-attributes" })
        #expect(finding.line == 1)
        let big = "<a>" + String(repeating: "x", count: 5000) + "</a>"
        let size = Validator(schemas: schemas, limits: ValidationLimits(maxBytes: 1000)).validate(bytes: Array(big.utf8), named: "s")
        #expect(size.errors.map(\.code).contains("input.too-large"))
        #expect(size.bytes <= 1000)
        let manyErrors = "<a>" + String(repeating: "<b x='1' x='2'/>", count: 1) + "</a>"
        #expect(!Validator(schemas: schemas).validate(bytes: Array(manyErrors.utf8), named: "m").isValid)
    }
}
