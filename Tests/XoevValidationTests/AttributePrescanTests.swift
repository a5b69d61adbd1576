import Foundation
import Testing
import XoevValidation

/// The attribute pre-scan sees every byte before libxml2 does, however the caller cuts the input: libxml2 2.9.14
/// checks duplicate attributes in quadratic time, so one start tag with 10^5 attributes must never reach it.
@Suite("Attribute pre-scan: no chunk size bypasses it")
struct AttributePrescanTests {
    static let declaration = Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n".utf8)

    /// 50 MiB: an XML declaration, then a start tag with 100,000 attributes (about 1.1 MB), then text.
    static let hostile: [UInt8] = {
        var bytes = declaration
        bytes.reserveCapacity(50 << 20)
        bytes += Array("<antrag xmlns=\"urn:example:prescan\"".utf8)
        for index in 0..<100_000 { bytes += Array(" a\(index)=\"v\"".utf8) }
        bytes += Array(">".utf8)
        bytes += [UInt8](repeating: UInt8(ascii: "x"), count: (50 << 20) - bytes.count)
        return bytes
    }()

    @Test("one 50 MiB buffer with a 100,000-attribute start tag, fed in one call, is refused by the pre-scan",
          arguments: [Int64(0), Int64(16 << 20)])
    func oneLargeBuffer(maxBytes: Int64) {
        let validator = Validator(schemas: Fixtures.ownSchemas, limits: ValidationLimits(maxBytes: maxBytes))
        let document = validator.startDocument(named: "attributes")
        let started = ContinuousClock.now
        let decided = Self.hostile.withUnsafeBytes { document.feed($0) }
        let report = document.finish()
        #expect(decided)
        #expect(report.verdict == .invalid)
        // The pre-scan's own code, and nothing else: not the size limit, not a libxml2 finding about the tag.
        #expect(report.errors.map(\.code) == ["input.too-many-attributes"], "\(report.diagnostics)")
        // libxml2 was handed the bytes up to the attribute over the limit at most (the tag began in the held-back
        // head, so the parser has its first part), never the buffer or the bytes up to the size limit.
        #expect(report.bytes < 64 << 10, "libxml2 was handed \(report.bytes) bytes")
        #expect(report.errors.first?.line == 2)
        // Only a guard against hangs (the quadratic check took tens of seconds); speed is measured elsewhere.
        #expect(ContinuousClock.now - started < .seconds(120))
    }

    @Test("a chunk crossing the size limit is scanned up to the limit: attributes are refused before the size")
    func chunkCrossingTheSizeLimit() {
        // The tag starts in the held-back head (the first 512 bytes), continues in the chunk that crosses the limit
        // and is complete well inside the limit.
        let validator = Validator(schemas: Fixtures.ownSchemas, limits: ValidationLimits(maxBytes: 4 << 20))
        let document = validator.startDocument(named: "crossing")
        let head = Array(Self.hostile[0..<Self.declaration.count])
        #expect(!document.feed(head + Array("<!-- padding -->".utf8)))
        let decided = Self.hostile[Self.declaration.count...].withUnsafeBytes { document.feed($0) }
        let report = document.finish()
        #expect(decided)
        #expect(report.errors.map(\.code) == ["input.too-many-attributes"], "\(report.diagnostics)")
        // Fed up to the attribute over the limit at most (the tag began in the previous chunk), not up to the limit.
        #expect(report.bytes < 64 << 10)
    }
}
