import AmtsboteTestSupport
import Foundation
import Testing
@testable import XoevValidation

/// Names in findings are written with the document's own prefixes; the expanded names stay as structured fields.
@Suite("Readable names in findings")
struct ReadableNamesTests {
    static let namespace = "https://gitlab.opencode.de/xoev/xwasser/-/raw/main/V1_0_0"

    static let schema = """
        <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="\(namespace)"
                   xmlns:t="\(namespace)" elementFormDefault="qualified">
          <xs:element name="probe"><xs:complexType><xs:sequence>
            <xs:element name="probennahmestelleKategorie" type="xs:string"/>
            <xs:element name="kennung" type="t:Kennung"/>
          </xs:sequence></xs:complexType></xs:element>
          <xs:simpleType name="Kennung"><xs:restriction base="xs:string"><xs:pattern value="[A-Z]{2}[0-9]{4}"/></xs:restriction></xs:simpleType>
        </xs:schema>
        """

    static func validate(_ document: String) throws -> ValidationReport {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let xsd = directory.appendingPathComponent("xwasser.xsd")
        try schema.write(to: xsd, atomically: true, encoding: .utf8)
        return Validator(schemas: try SchemaSet(xsd: xsd.path)).validate(bytes: Array(document.utf8), named: "probe.xml")
    }

    @Test("a long namespace URL becomes the document's prefix; the expanded name is kept in `names`")
    func prefixedNames() throws {
        let report = try Self.validate("""
            <xwas:probe xmlns:xwas="\(Self.namespace)"><xwas:kennung>AB1234</xwas:kennung></xwas:probe>
            """)
        let finding = try #require(report.errors.first)
        #expect(finding.code == "schema.element.unexpected")
        #expect(finding.message == "Element 'xwas:kennung': This element is not expected. Expected is ( xwas:probennahmestelleKategorie ).",
                "\(finding.message)")
        #expect(!finding.message.contains("gitlab"))
        #expect(finding.names == [ExpandedName(namespace: Self.namespace, local: "kennung", prefix: "xwas"),
                                  ExpandedName(namespace: Self.namespace, local: "probennahmestelleKategorie", prefix: "xwas")])
    }

    @Test("the default namespace shows the local name alone; a quoted pattern's {2} is no name")
    func defaultNamespaceAndPatterns() throws {
        let report = try Self.validate("""
            <probe xmlns="\(Self.namespace)"><probennahmestelleKategorie>x</probennahmestelleKategorie><kennung>A1</kennung></probe>
            """)
        let finding = try #require(report.errors.first)
        #expect(finding.code == "schema.value.pattern")
        #expect(finding.message.hasPrefix("Element 'kennung': [facet 'pattern'] The value 'A1' is not accepted by the pattern '[A-Z]{2}[0-9]{4}'"),
                "\(finding.message)")
        #expect(finding.names == [ExpandedName(namespace: Self.namespace, local: "kennung", prefix: "")])
    }

    @Test("a prefix re-bound by an inner element is not used for the outer namespace")
    func reboundPrefix() throws {
        let report = try Self.validate("""
            <xwas:probe xmlns:xwas="\(Self.namespace)"><xwas:x xmlns:xwas="urn:other:1"/></xwas:probe>
            """)
        let finding = try #require(report.errors.first)
        #expect(finding.message == "Element 'xwas:x': This element is not expected. Expected is ( {\(Self.namespace)}probennahmestelleKategorie ).",
                "\(finding.message)")
        #expect(finding.names.last == ExpandedName(namespace: Self.namespace, local: "probennahmestelleKategorie", prefix: nil))
    }

    @Test("a namespace no open element binds stays expanded, so nothing is guessed")
    func unboundNamespaceStaysExpanded() {
        let readable = ExpandedNames.readable("Expected is ( {urn:other:1}a, {urn:mine:1}b ).") { $0 == "urn:mine:1" ? "m" : nil }
        #expect(readable.message == "Expected is ( {urn:other:1}a, m:b ).")
        #expect(readable.names.map(\.display) == ["{urn:other:1}a", "m:b"])
    }
}
