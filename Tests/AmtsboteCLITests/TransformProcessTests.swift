import AmtsboteTestSupport
import Crypto
import Foundation
import Testing

/// The transformation stage through `amtsbote submit`: the sample configuration, a stylesheet that tries to read
/// a file, and a broken one.
@Suite("Transformations through amtsbote submit")
struct TransformProcessTests {
    static let samples = TestEnvironment.projectRoot.appendingPathComponent("Samples")
    static let schemas = TestEnvironment.projectRoot.appendingPathComponent("Schemas")

    /// `Samples/config/transform.json` with its data folders in `directory`, and `transformations` replaced when given.
    static func configuration(in directory: URL, transformations: String? = nil) throws -> URL {
        var text = try String(contentsOf: samples.appendingPathComponent("config/transform.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"../../amtsbote-data", with: "\"" + directory.path)
            .replacingOccurrences(of: "\"../", with: "\"" + samples.appendingPathComponent("config").path + "/../")
        if let transformations, let start = text.range(of: "\"transformations\": [") {
            text = String(text[..<start.lowerBound]) + "\"transformations\": " + transformations + "\n}\n"
        }
        let file = directory.appendingPathComponent("config.json")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    static func sha256(_ url: URL) throws -> String { sha256(try Data(contentsOf: url)) }
    static func sha256(_ data: Data) -> String { SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined() }

    /// The hash of the payload as received that a filesystem Postfach's file was made from: its metadata's
    /// `originalSHA256` when a transformation ran, else the delivered bytes' own.
    static func originalSHA256(ofDelivered file: URL) throws -> String? {
        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: file.deletingPathExtension().appendingPathExtension("json")))
        let fields = metadata as? [String: Any]
        return fields?["originalSHA256"] as? String ?? fields?["payloadSHA256"] as? String
    }

    @Test("the sample configuration delivers each Wohnsitz-Anmeldung as a Meldewesen import, naming both hashes; other forms unchanged")
    func sample() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try Self.configuration(in: directory)
        let result = try CLI.run(["submit", "--config", config.path, "Samples/valid"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let koeln = directory.appendingPathComponent("transform-postfach/gemeinde-05315000-koeln/3f2b9c1e-8d4a-4e6b-9a7c-1d2e3f4a5b6c")
        let delivered = try String(contentsOf: koeln.appendingPathExtension("xml"), encoding: .utf8)
        #expect(delivered.contains("<mi:meldewesenImport") && delivered.contains("lieferung=\"3f2b9c1e-8d4a-4e6b-9a7c-1d2e3f4a5b6c\""))
        let metadata = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: koeln.appendingPathExtension("json"))) as? [String: Any])
        #expect(metadata["originalSHA256"] as? String == (try Self.sha256(Self.samples.appendingPathComponent("valid/wohnsitz-anmeldung-koeln.xml"))))
        #expect(metadata["payloadSHA256"] as? String == (try Self.sha256(koeln.appendingPathExtension("xml"))))
        #expect(metadata["transformation"] as? String == "meldewesen-import")
        // A Gewerbeanmeldung matches no rule and travels unchanged.
        let gewerbe = directory.appendingPathComponent("transform-postfach/land-09-bayern/c0ffee00-1234-4abc-8def-0123456789ab.xml")
        #expect(try Self.sha256(gewerbe) == (try Self.sha256(Self.samples.appendingPathComponent("valid/gewerbe-anmeldung-gmbh-muenchen.xml"))))
        // Sent again: the same output under the same id, a duplicate, not a second delivery.
        let again = try CLI.run(["submit", "--config", config.path, "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(again.status == 0 && again.stdout.contains("duplicate"), "\(again.stdout)")
    }

    @Test("a stylesheet that reads /etc/passwd: the submission is kept as dead with transform.access-refused, nothing delivered")
    func refused() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let sheet = directory.appendingPathComponent("steal.xsl")
        try """
            <xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
              <xsl:template match="/"><x><xsl:copy-of select="document('file:///etc/passwd')"/></x></xsl:template>
            </xsl:stylesheet>
            """.write(to: sheet, atomically: true, encoding: .utf8)
        let config = try Self.configuration(in: directory, transformations: "[{\"stylesheets\": [\"\(sheet.path)\"]}]")
        let result = try CLI.run(["submit", "--config", config.path, "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(result.status == 5, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("dead: transform.access-refused"), "\(result.stdout)")
        #expect(!result.stdout.contains("root:"), "nothing of the file reaches the output")
        let postfach = directory.appendingPathComponent("transform-postfach/gemeinde-05315000-koeln")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: postfach.path)) ?? []).filter { $0.hasSuffix(".xml") }.isEmpty)
        let listed = try CLI.run(["deliveries", "--config", config.path, "--format", "json"])
        #expect(listed.stdout.contains("\"reasonCode\":\"transform.access-refused\""), "\(listed.stdout)")
    }

    @Test("amtsbote transform shows the output without delivering; route --explain names the steps")
    func dryRun() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try Self.configuration(in: directory)
        let shown = try CLI.run(["transform", "--config", config.path, "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(shown.status == 0, "\(shown.stderr)")
        #expect(shown.stdout.contains("<mi:meldewesenImport") && shown.stderr.contains("by 'meldewesen-import'"), "\(shown.stderr)")
        let unchanged = try CLI.run(["transform", "--config", config.path, "Samples/valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml"])
        #expect(unchanged.status == 0 && unchanged.stderr.contains("travels unchanged"))
        #expect(unchanged.stdout == (try String(contentsOf: Self.samples.appendingPathComponent("valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml"), encoding: .utf8)))
        let invalid = try CLI.run(["transform", "--config", config.path, "Samples/invalid/gewerbe-ohne-betrieb.xml"])
        #expect(invalid.status == 1 && invalid.stdout.isEmpty, "\(invalid.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("transform-postfach").path), "nothing delivered")
        let explained = try CLI.run(["route", "--explain", "--config", config.path, "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(explained.stdout.contains("transformation 'meldewesen-import': wohnsitz-meldewesen-import.xsl (sha256 "), "\(explained.stdout)")
    }

    @Test("a broken stylesheet is a configuration error naming its file and line (exit 2), before anything is read")
    func broken() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let sheet = directory.appendingPathComponent("broken.xsl")
        try "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">\n<xsl:template match=\"/\">\n</xsl:stylesheet>\n"
            .write(to: sheet, atomically: true, encoding: .utf8)
        let config = try Self.configuration(in: directory, transformations: "[{\"stylesheets\": [\"\(sheet.path)\"]}]")
        let result = try CLI.run(["submit", "--config", config.path, "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(result.status == 2, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("transformations[0].stylesheets[0]") && result.stderr.contains("broken.xsl:4: config.stylesheet-invalid"), "\(result.stderr)")
    }
}
