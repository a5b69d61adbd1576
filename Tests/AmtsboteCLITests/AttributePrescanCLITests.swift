import AmtsboteTestSupport
import Foundation
import Testing

/// The attribute pre-scan through the binary: the tool reads files in chunks, and no chunk, not even the one that
/// crosses `--max-size`, reaches libxml2 unscanned.
@Suite("amtsbote validate: the attribute pre-scan sees every chunk")
struct AttributePrescanCLITests {
    @Test("a 50 MiB file with a 100,000-attribute start tag is refused by the pre-scan, with and without --max-size",
          arguments: ["0", "520000"])
    func manyAttributes(maxSize: String) throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // The tag starts at about 300,000 bytes: inside the second 256 KiB read, the one that crosses 520,000.
        var bytes = Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<antrag xmlns=\"urn:example:prescan\">".utf8)
        bytes.reserveCapacity(50 << 20)
        bytes += [UInt8](repeating: UInt8(ascii: "x"), count: 300_000 - bytes.count)
        bytes += Array("<x".utf8)
        for index in 0..<100_000 { bytes += Array(" a\(index)=\"v\"".utf8) }
        bytes += Array("/>".utf8)
        bytes += [UInt8](repeating: UInt8(ascii: "x"), count: (50 << 20) - bytes.count - 9)
        bytes += Array("</antrag>".utf8)
        let file = directory.appendingPathComponent("attributes.xml")
        try Data(bytes).write(to: file)

        let started = ContinuousClock.now
        let result = try CLI.run(["validate", "--no-code-lists", "--max-size", maxSize, file.path])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stdout.contains("fatal[input.too-many-attributes]"), "\(result.stdout)")
        #expect(!result.stdout.contains("input.too-large"), "\(result.stdout)")
        // Only a guard against hangs; the quadratic check took tens of seconds.
        #expect(ContinuousClock.now - started < .seconds(120))
    }
}
