import AmtsboteTestSupport
import Foundation
import Testing
import XoevTransform

/// Stylesheets compiled and run in the sandbox: what a stylesheet may do, and every way out of it refused with a
/// code, nothing read, nothing fetched, nothing written.
@Suite("XSLT stylesheets (libxslt, sandboxed)")
struct StylesheetTests {
    static let input = Data("""
        <?xml version="1.0" encoding="UTF-8"?>
        <anmeldung xmlns="urn:test"><person><name>Müller</name><vorname>Jürgen</vorname></person></anmeldung>
        """.utf8)

    /// A folder with `files` (name → content); removed when `body` returns.
    static func folder<T>(_ files: [String: String], _ body: (URL) throws -> T) throws -> T {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, text) in files {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        return try body(directory)
    }

    static func stylesheet(_ body: String, params: String = "", namespaces: String = "", imports: String = "",
                           declaration: String = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>") -> String {
        """
        \(declaration)
        <xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:t="urn:test" exclude-result-prefixes="t" \(namespaces)>
          \(imports)
          <xsl:output method="xml" encoding="UTF-8" indent="no"/>
          \(params)
          \(body)
        </xsl:stylesheet>
        """
    }

    @Test("a stylesheet transforms with string parameters (never evaluated as XPath) and its imports from its folder")
    func transforms() throws {
        let main = Self.stylesheet("""
            <xsl:template match="/">
              <import id="{$id}" gemeinde="{$gemeinde}"><xsl:call-template name="name"/><xsl:copy-of select="document('codes.xml')/codes/c[@k='1']/text()"/></import>
            </xsl:template>
            """, params: "<xsl:param name=\"id\"/><xsl:param name=\"gemeinde\"/>", imports: "<xsl:import href=\"lib/common.xsl\"/>")
        let common = Self.stylesheet("<xsl:template name=\"name\"><name><xsl:value-of select=\"//t:name\"/></name></xsl:template>")
        try Self.folder(["main.xsl": main, "lib/common.xsl": common, "codes.xml": "<codes><c k='1'>eins</c></codes>"]) { directory in
            let sheet = try Stylesheet(path: directory.appendingPathComponent("main.xsl").path)
            #expect(sheet.sha256.count == 64)
            let output = try sheet.transform(Self.input, parameters: ["id": "A-1", "gemeinde": "x' or 1='1\" <&"])
            let text = String(decoding: output, as: UTF8.self)
            #expect(text.contains("<import id=\"A-1\" gemeinde=\"x' or 1='1&quot; &lt;&amp;\"><name>Müller</name>eins</import>"), "\(text)")
        }
    }

    @Test("configuration errors name the stylesheet's file and line: not well-formed, no XSLT, a DOCTYPE, an import from outside")
    func compileErrors() throws {
        try Self.folder(["broken.xsl": "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">\n\n<xsl:template match=\"/\">\n</xsl:stylesheet>",
                         "wrong.xsl": Self.stylesheet("<xsl:template match=\"/\"><xsl:value-of select=\"((\"/></xsl:template>"),
                         "entity.xsl": Self.stylesheet("<xsl:template match=\"/\">&e;</xsl:template>",
                                                       declaration: "<?xml version=\"1.0\"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"),
                         "outside.xsl": Self.stylesheet("", imports: "<xsl:import href=\"file:///etc/passwd\"/>"),
                         "sub/inner.xsl": Self.stylesheet("<xsl:include href=\"../broken.xsl\"/>")]) { directory in
            func error(_ name: String) -> TransformError? {
                do { _ = try Stylesheet(path: directory.appendingPathComponent(name).path); return nil }
                catch { return error as? TransformError }
            }
            let broken = try #require(error("broken.xsl"))
            #expect(broken.code == .stylesheetInvalid && broken.line == 4 && broken.file.hasSuffix("broken.xsl"), "\(broken)")
            let wrong = try #require(error("wrong.xsl"))
            #expect(wrong.code == .stylesheetInvalid && wrong.line > 0, "\(wrong)")
            let entity = try #require(error("entity.xsl"))
            #expect(entity.code == .stylesheetInvalid && entity.message.contains("DOCTYPE"), "\(entity)")
            let outside = try #require(error("outside.xsl"))
            #expect(outside.code == .stylesheetInvalid && outside.message.contains("outside"), "\(outside)")
            let inner = try #require(error("sub/inner.xsl"))
            #expect(inner.code == .stylesheetInvalid, "an include above the stylesheet's own folder: \(inner)")
        }
    }

    @Test("document() of /etc/passwd or of the network, an output file, endless recursion, an exponential run, a huge output: each stopped with its code")
    func hostile() throws {
        // A listener that must never see a connection.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        listen(listener, 8)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let port = UInt16(bigEndian: address.sin_port)
        let written = FileManager.default.temporaryDirectory.appendingPathComponent("amtsbote-xslt-\(UUID().uuidString).txt")

        let sheets = [
            "passwd.xsl": Self.stylesheet("<xsl:template match=\"/\"><x><xsl:copy-of select=\"document('file:///etc/passwd')\"/></x></xsl:template>"),
            "relative.xsl": Self.stylesheet("<xsl:template match=\"/\"><x><xsl:copy-of select=\"document('../../../../../../etc/passwd')\"/></x></xsl:template>"),
            "network.xsl": Self.stylesheet("<xsl:template match=\"/\"><x><xsl:copy-of select=\"document('http://127.0.0.1:\(port)/')\"/></x></xsl:template>"),
            "write.xsl": Self.stylesheet("<xsl:template match=\"/\"><xsl:document href=\"\(written.path)\"><x/></xsl:document><y/></xsl:template>", namespaces: ""),
            "exsl.xsl": Self.stylesheet("<xsl:template match=\"/\"><exsl:document href=\"\(written.path)\"><x/></exsl:document><y/></xsl:template>",
                                        namespaces: "xmlns:exsl=\"http://exslt.org/common\" extension-element-prefixes=\"exsl\""),
            "recursion.xsl": Self.stylesheet("<xsl:template match=\"/\"><xsl:call-template name=\"r\"/></xsl:template><xsl:template name=\"r\"><x><xsl:call-template name=\"r\"/></x></xsl:template>"),
            "exponential.xsl": Self.stylesheet("""
                <xsl:template match="/"><xsl:call-template name="e"><xsl:with-param name="n" select="60"/></xsl:call-template></xsl:template>
                <xsl:template name="e"><xsl:param name="n"/><xsl:if test="$n &gt; 0"><xsl:call-template name="e"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template><xsl:call-template name="e"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template></xsl:if></xsl:template>
                """),
            "huge.xsl": Self.stylesheet("""
                <xsl:template match="/"><out><xsl:call-template name="e"><xsl:with-param name="n" select="16"/></xsl:call-template></out></xsl:template>
                <xsl:template name="e"><xsl:param name="n"/><xsl:choose><xsl:when test="$n &gt; 0"><xsl:call-template name="e"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template><xsl:call-template name="e"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template></xsl:when><xsl:otherwise><x>0123456789</x></xsl:otherwise></xsl:choose></xsl:template>
                """),
            "terminate.xsl": Self.stylesheet("<xsl:template match=\"/\"><xsl:message terminate=\"yes\">value <xsl:value-of select=\"//t:name\"/></xsl:message></xsl:template>"),
        ]
        try Self.folder(sheets) { directory in
            func run(_ name: String, limits: TransformLimits = TransformLimits()) throws -> TransformError? {
                let sheet = try Stylesheet(path: directory.appendingPathComponent(name).path)
                do { _ = try sheet.transform(Self.input, limits: limits); return nil } catch { return error as? TransformError }
            }
            for name in ["passwd.xsl", "relative.xsl", "network.xsl", "write.xsl"] {
                let error = try #require(try run(name), "\(name) must not succeed")
                #expect(error.code == .accessRefused, "\(name): \(error)")
            }
            // EXSLT is not registered: exsl:document is an unknown extension element (and would meet the same
            // refusal to write in a process that registered EXSLT).
            let exsl = try #require(try run("exsl.xsl"))
            #expect([.accessRefused, .failed].contains(exsl.code), "\(exsl)")
            #expect(!FileManager.default.fileExists(atPath: written.path), "nothing written")
            var pending = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            #expect(poll(&pending, 1, 0) == 0, "nothing connected to the listener")

            let recursion = try #require(try run("recursion.xsl"))
            #expect(recursion.code == .failed && recursion.message.contains("recursion"), "\(recursion)")
            // 2^60 calls never finish on any machine: only the time limit ends it.
            let exponential = try #require(try run("exponential.xsl", limits: TransformLimits(timeout: .milliseconds(300))))
            #expect(exponential.code == .timeout && exponential.isTransient, "\(exponential)")
            let huge = try #require(try run("huge.xsl", limits: TransformLimits(maxOutputBytes: 64 << 10)))
            #expect(huge.code == .outputTooLarge, "\(huge)")
            let terminated = try #require(try run("terminate.xsl"))
            #expect(terminated.code == .failed && !terminated.message.contains("Müller"), "an xsl:message never passes on input values: \(terminated)")
        }
    }

    @Test("an input with a DOCTYPE or not well-formed is refused before the stylesheet runs")
    func inputs() throws {
        try Self.folder(["copy.xsl": Self.stylesheet("<xsl:template match=\"/\"><xsl:copy-of select=\".\"/></xsl:template>")]) { directory in
            let sheet = try Stylesheet(path: directory.appendingPathComponent("copy.xsl").path)
            let laughs = "<?xml version=\"1.0\"?><!-- c --><!DOCTYPE a [<!ENTITY a \"aaaaaaaaaa\">"
                + (1...40).map { "<!ENTITY a\($0) \"" + String(repeating: "&a\($0 == 1 ? "" : String($0 - 1));", count: 10) + "\">" }.joined()
                + "]><a>&a40;</a>"
            for input in ["<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>", "<a><b></a>", laughs] {
                #expect(throws: TransformError.self) { try sheet.transform(Data(input.utf8)) }
                do { _ = try sheet.transform(Data(input.utf8)) } catch let error as TransformError {
                    #expect(error.code == .inputRefused, "\(error)")
                }
            }
        }
    }
}
