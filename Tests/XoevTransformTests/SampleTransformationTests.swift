import AmtsboteTestSupport
import Foundation
import Testing
import XoevTransform
import XoevValidation

/// The sample transformation: a Wohnsitz-Anmeldung into the Meldewesen import format, checked against its schema.
@Suite("The sample transformation (Schemas/transform)")
struct SampleTransformationTests {
    static let root = TestEnvironment.projectRoot

    @Test("each Wohnsitz sample becomes a Meldewesen import that is valid against its schema, with the delivery's facts")
    func wohnsitzToMeldewesen() throws {
        let stylesheet = try Stylesheet(path: Self.root.appendingPathComponent("Schemas/transform/wohnsitz-meldewesen-import.xsl").path)
        let target = try SchemaSet(xsd: Self.root.appendingPathComponent("Schemas/fachverfahren/meldewesen-import.xsd").path)
        let validator = Validator(schemas: target)
        for (name, persons) in [("wohnsitz-anmeldung-koeln.xml", 1), ("wohnsitz-anmeldung-familie-hanau.xml", 3)] {
            let input = try Data(contentsOf: Self.root.appendingPathComponent("Samples/valid").appendingPathComponent(name))
            let output = try stylesheet.transform(input, parameters: ["deliveryId": "d-\(persons)", "receivedAt": "2026-11-02T09:15:00Z"])
            let report = validator.validate(bytes: Array(output), named: name)
            #expect(report.isValid, "\(name): \(report.errors.map { "\($0.line): \($0.message)" })")
            let text = String(decoding: output, as: UTF8.self)
            #expect(text.contains("lieferung=\"d-\(persons)\"") && text.contains("eingang=\"2026-11-02T09:15:00Z\""))
            #expect(text.components(separatedBy: "<mi:person ").count - 1 == persons, "one person element per person")
        }
    }
}
