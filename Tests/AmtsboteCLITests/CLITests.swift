import AmtsboteTestSupport
import Foundation
import Testing

/// Runs the built `amtsbote` binary and checks its output and exit codes.
enum CLI {
    static let binary: URL = {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return me.deletingLastPathComponent().appendingPathComponent("amtsbote")
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Starts the binary with its standard input and output on pipes the test writes and reads as it goes.
    static func start(_ arguments: [String]) throws -> (process: Process, input: Pipe, output: Pipe) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.currentDirectoryURL = TestEnvironment.projectRoot
        return try ProcessStart.serialized {
            let input = Pipe(), output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            return (process, input, output)
        }
    }

    static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:],
                    wrapper: [String] = []) throws -> Result {
        let process = Process()
        if wrapper.isEmpty {
            process.executableURL = binary
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = wrapper + [binary.path] + arguments
        }
        process.currentDirectoryURL = TestEnvironment.projectRoot
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "AMTSBOTE_SCHEMAS")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        // stderr goes to a file, stdout to a pipe read to its end before waiting: no pipe can fill up and block.
        let errFile = FileManager.default.temporaryDirectory.appendingPathComponent("amtsbote-stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errFile) }
        let (out, input) = try ProcessStart.serialized {
            let out = Pipe(), input = Pipe()
            process.standardOutput = out
            process.standardError = try FileHandle(forWritingTo: errFile)
            process.standardInput = input
            try process.run()
            return (out, input)
        }
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errData = (try? Data(contentsOf: errFile)) ?? Data()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}

@Suite("amtsbote validate: the built binary")
struct CLITests {
    @Test("a valid file: exit 0, one line naming the schema, a summary")
    func validFile() throws {
        let result = try CLI.run(["validate", "--missing-code-lists", "ignore", "Samples/valid/wohnsitz-anmeldung-koeln.xml"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == """
            Samples/valid/wohnsitz-anmeldung-koeln.xml: valid [wohnsitz.anmeldung-1.0]
            1 document: 1 valid, 0 invalid, 0 unreadable

            """)
    }

    @Test("code lists: Schemas/codelists by default, unloaded lists warned once per document, a wrong code is an error")
    func codeLists() throws {
        let valid = try CLI.run(["validate", "Samples/valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml"])
        #expect(valid.status == 0, "\(valid.stderr)")
        #expect(valid.stdout.contains(
            "hundesteuer-anmeldung-zwei-hunde-hamm.xml:37:18: warning[codelist.unknown-list]: the code list urn:de:dsmeld:schluesseltabelle:staat is not loaded"))
        #expect(valid.stdout.components(separatedBy: "schluesseltabelle:staat is not loaded").count == 2, "once per list")
        #expect(!valid.stdout.contains("codeliste:nachrichtentyp"), "the loaded list is checked, not warned about")
        let text = try String(contentsOfFile: TestEnvironment.projectRoot.appendingPathComponent(
            "Samples/valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml").path, encoding: .utf8)
        let wrong = try CLI.run(["validate", "--missing-code-lists", "error", "-"],
                                stdin: Data(text.replacingOccurrences(of: "<bas:code>0301</bas:code>", with: "<bas:code>0399</bas:code>").utf8))
        #expect(wrong.status == 1)
        #expect(wrong.stdout.contains("-:8:18: error[codelist.value-unknown]: the code '0399' is not in the code list urn:xoev-de:amtsbote:codeliste:nachrichtentyp (version 1.0)"), "\(wrong.stdout)")
        #expect(wrong.stdout.contains("error[codelist.unknown-list]"), "--missing-code-lists error")
        let off = try CLI.run(["validate", "--no-code-lists", "-"],
                              stdin: Data(text.replacingOccurrences(of: "<bas:code>0301</bas:code>", with: "<bas:code>0399</bas:code>").utf8))
        #expect(off.status == 0)
    }

    @Test("an invalid file: exit 1, file:line:col: error[code]: message (path)")
    func invalidFile() throws {
        let result = try CLI.run(["validate", "--missing-code-lists", "ignore", "Samples/invalid/wohnsitz-unbekannte-wohnungsart.xml"])
        #expect(result.status == 1)
        #expect(result.stdout.hasPrefix(
            "Samples/invalid/wohnsitz-unbekannte-wohnungsart.xml:41:54: error[schema.value.enumeration]: "))
        #expect(result.stdout.contains("(/wa:wohnsitz.anmeldung.0101/wa:wohnung/wa:artDerWohnung)\n"))
        #expect(result.stdout.hasSuffix("1 document: 0 valid, 1 invalid, 0 unreadable\n"))
    }

    @Test("a folder is walked recursively in sorted order; exit 1 when any document is invalid")
    func folder() throws {
        let result = try CLI.run(["validate", "Samples"])
        #expect(result.status == 1)
        let valid = try FileManager.default.contentsOfDirectory(
            atPath: TestEnvironment.projectRoot.appendingPathComponent("Samples/valid").path).filter { $0.hasSuffix(".xml") }
        let invalid = try FileManager.default.contentsOfDirectory(
            atPath: TestEnvironment.projectRoot.appendingPathComponent("Samples/invalid").path).filter { $0.hasSuffix(".xml") }
        let unroutable = try FileManager.default.contentsOfDirectory(
            atPath: TestEnvironment.projectRoot.appendingPathComponent("Samples/unroutable").path).filter { $0.hasSuffix(".xml") }
        let total = valid.count + invalid.count + unroutable.count
        let schemaValid = valid.count + unroutable.count
        #expect(result.stdout.hasSuffix("\(total) documents: \(schemaValid) valid, \(invalid.count) invalid, 0 unreadable\n"))
        let names = result.stdout.split(separator: "\n").compactMap { $0.split(separator: ":").first.map(String.init) }
        var seen: [String] = []
        for name in names where name.hasPrefix("Samples/") && seen.last != name { seen.append(name) }
        #expect(seen == seen.sorted())
        #expect(seen.count == total)
    }

    @Test("standard input is read with -")
    func standardInput() throws {
        let data = try Data(contentsOf: TestEnvironment.projectRoot
            .appendingPathComponent("Samples/valid/gewerbe-anmeldung-gmbh-muenchen.xml"))
        let valid = try CLI.run(["validate", "-"], stdin: data)
        #expect(valid.status == 0)
        #expect(valid.stdout.hasPrefix("-: valid [gewerbe.anmeldung-1.1]\n"))
        // Cut after a complete tag halfway through: an upload that stopped early.
        let cut = try #require(data.prefix(data.count / 2).lastIndex(of: UInt8(ascii: ">")))
        let broken = try CLI.run(["validate", "-"], stdin: data.prefix(through: cut))
        #expect(broken.status == 1)
        #expect(broken.stdout.contains("fatal[xml.truncated]: the document ends before its elements are closed"))
    }

    @Test("a missing file: exit 3, and 3 wins over 1")
    func unreadable() throws {
        let missing = try CLI.run(["validate", "Samples/does-not-exist.xml"])
        #expect(missing.status == 3)
        #expect(missing.stdout.contains("Samples/does-not-exist.xml:0:0: error[input.unreadable]: No such file or directory"))
        let mixed = try CLI.run(["validate", "Samples/invalid/mit-doctype.xml", "nope.xml"])
        #expect(mixed.status == 3)
        #expect(mixed.stdout.hasSuffix("2 documents: 0 valid, 1 invalid, 1 unreadable\n"))
    }

    @Test("usage and configuration errors exit 2", arguments: [
        ["validate"],
        ["validate", "--format", "yaml", "Samples"],
        ["validate", "--no-such-flag", "Samples"],
        ["validate", "--schemas", "Samples/valid", "Samples"],
        ["validate", "--schemas", "Schemas", "--xsd", "x.xsd", "Samples"],
        ["validate", "--max-depth", "0", "Samples"],
        ["validate", "-", "-"],
    ])
    func usageErrors(arguments: [String]) throws {
        let result = try CLI.run(arguments)
        #expect(result.status == 2, "\(arguments): \(result.stderr)")
        #expect(!result.stderr.isEmpty)
    }

    @Test("--version names the release and the libxml2 in use, exit 0")
    func version() throws {
        let result = try CLI.run(["--version"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("amtsbote ") && result.stdout.contains("(libxml2 2."), "\(result.stdout)")
    }

    @Test("--help documents the exit codes")
    func help() throws {
        let result = try CLI.run(["validate", "--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("EXIT CODES"))
        #expect(result.stdout.contains("3  at least one input could not be read"))
    }

    @Test("--format json: one object per document and line, every key present")
    func json() throws {
        let result = try CLI.run(["validate", "--format", "json", "--no-code-lists", "Samples/valid/hundesteuer-anmeldung-zwei-hunde-hamm.xml",
                                  "Samples/invalid/gewerbe-ohne-betrieb.xml", "missing.xml"])
        #expect(result.status == 3)
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 3)
        let objects = try lines.map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        for object in objects {
            #expect(Set(object.keys) == ["formatVersion", "document", "status", "schema", "root", "bytes", "diagnostics"])
        }
        #expect(objects.map { $0["status"] as? String } == ["valid", "invalid", "unreadable"])
        #expect(objects[0]["schema"] as? String == "hundesteuer.anmeldung-1.0")
        let root = try #require(objects[0]["root"] as? [String: String])
        #expect(root == ["namespace": "urn:xoev-de:amtsbote:hundesteuer:1", "name": "hundesteuer.anmeldung.0301"])
        let finding = try #require((objects[1]["diagnostics"] as? [[String: Any]])?.first)
        #expect(finding["code"] as? String == "schema.element.unexpected")
        #expect(finding["line"] as? Int == 33)
        #expect(finding["column"] as? Int == 15)
        #expect(finding["path"] as? String == "/gew:gewerbe.anmeldung.0201/gew:inhaber")
        #expect(finding["severity"] as? String == "error")
        #expect(objects[2]["schema"] is NSNull)
    }

    @Test("libxml2 prints nothing behind the tool's back: an undecodable prolog is xml.encoding, stderr stays empty")
    func undecodableProlog() throws {
        // Found by fuzzing with the UBL schema: libxml2 2.9 reported this on its own stderr, quoting the bytes.
        let seed = try Data(contentsOf: TestEnvironment.projectRoot
            .appendingPathComponent("Fuzz/regressions/stray-encoding-error-in-prolog.xml"))
        let scratch = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let xsd = scratch.appendingPathComponent("one.xsd").path
        try Data("""
            <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="a" type="xs:string"/></xs:schema>
            """.utf8).write(to: URL(fileURLWithPath: xsd))
        let quiet = try CLI.run(["validate", "--quiet", "--xsd", xsd, "-"], stdin: seed)
        #expect(quiet.status == 1)
        #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty, "stdout: \(quiet.stdout) stderr: \(quiet.stderr)")
        let json = try CLI.run(["validate", "--format", "json", "--xsd", xsd, "-"], stdin: seed)
        #expect(json.stderr.isEmpty, "\(json.stderr)")
        #expect(json.stdout.contains("\"code\":\"xml.encoding\""), "\(json.stdout)")
        #expect(!json.stdout.contains("validation.incomplete"), "\(json.stdout)")
        #expect(!json.stdout.contains("0xEE") && !json.stdout.contains("0xA7"), "a finding quotes the document's bytes")

        // A byte order mark does not open the door to another encoding: EBCDIC after it was accepted as valid.
        var ebcdic = Data([0xEF, 0xBB, 0xBF])
        ebcdic.append(Data([0x4C, 0x6F, 0xA7, 0x94, 0x93, 0x40]))   // "<?xml " in IBM037
        ebcdic.append(Data("version=\"1.0\" encoding=\"IBM037\"?><a>x</a>".utf8.map { Self.ibm037[$0] ?? 0x6F }))
        let afterMark = try CLI.run(["validate", "--format", "json", "--xsd", xsd, "-"], stdin: ebcdic)
        #expect(afterMark.status == 1 && afterMark.stdout.contains("\"code\":\"xml.encoding\""), "\(afterMark.stdout)")
    }

    /// ASCII -> IBM037 (EBCDIC) for the characters of a small XML document.
    static let ibm037: [UInt8: UInt8] = {
        var table: [UInt8: UInt8] = [0x20: 0x40, 0x3C: 0x4C, 0x3E: 0x6E, 0x3F: 0x6F, 0x3D: 0x7E, 0x22: 0x7F,
                                     0x2E: 0x4B, 0x2F: 0x61]
        for (offset, c) in "abcdefghi".utf8.enumerated() { table[c] = 0x81 + UInt8(offset) }
        for (offset, c) in "jklmnopqr".utf8.enumerated() { table[c] = 0x91 + UInt8(offset) }
        for (offset, c) in "stuvwxyz".utf8.enumerated() { table[c] = 0xA2 + UInt8(offset) }
        for (offset, c) in "ABCDEFGHI".utf8.enumerated() { table[c] = 0xC1 + UInt8(offset) }
        for (offset, c) in "JKLMNOPQR".utf8.enumerated() { table[c] = 0xD1 + UInt8(offset) }
        for (offset, c) in "STUVWXYZ".utf8.enumerated() { table[c] = 0xE2 + UInt8(offset) }
        for (offset, c) in "0123456789".utf8.enumerated() { table[c] = 0xF0 + UInt8(offset) }
        return table
    }()

    @Test("--quiet prints nothing; the exit code tells")
    func quiet() throws {
        let result = try CLI.run(["validate", "--quiet", "Samples"])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
    }

    @Test("--xsd validates against one schema, like xmllint --schema", .enabled(if: TestEnvironment.badInputTestsEnabled))
    func singleSchema() throws {
        let badInputs = try #require(TestEnvironment.badInputs, "../shared/bad-inputs is required but missing")
        let result = try CLI.run(["validate", "--xsd", badInputs.appendingPathComponent("test.xsd").path,
                                  badInputs.appendingPathComponent("00-valid-control.xml").path,
                                  badInputs.appendingPathComponent("21d-unknown-extra-element.xml").path])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("00-valid-control.xml: valid [test.xsd]"))
        #expect(result.stdout.contains("error[schema.element.unexpected]"))
    }

    @Test("a folder walk does not follow links out of the tree")
    func symlinksStayInTree() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let inside = directory.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: inside, withIntermediateDirectories: true)
        let outsideFile = directory.appendingPathComponent("outside.xml")
        try Data("<x/>".utf8).write(to: outsideFile)
        try Data("<y/>".utf8).write(to: inside.appendingPathComponent("own.xml"))
        try FileManager.default.createSymbolicLink(at: inside.appendingPathComponent("link-out.xml"), withDestinationURL: outsideFile)
        try FileManager.default.createSymbolicLink(at: inside.appendingPathComponent("link-in.xml"),
                                                   withDestinationURL: inside.appendingPathComponent("own.xml"))
        try FileManager.default.createSymbolicLink(at: inside.appendingPathComponent("loop"), withDestinationURL: inside)
        let result = try CLI.run(["validate", inside.path])
        #expect(result.stdout.contains("link-in.xml"))
        #expect(result.stdout.contains("own.xml"))
        #expect(!result.stdout.contains("link-out.xml"))
        #expect(result.stdout.hasSuffix("2 documents: 0 valid, 2 invalid, 0 unreadable\n"))
    }
}

@Suite("Standard input is streamed")
struct StreamingTests {
    @Test("a refused document on an open pipe is decided before the sender closes it")
    func decidedBeforeEndOfInput() throws {
        let (process, input, output) = try CLI.start(["validate", "-"])
        // More than the 512 bytes held back for the start-of-document check, then silence with the pipe open.
        let head = "<?xml version=\"1.0\"?>\n<!DOCTYPE a [<!ENTITY e \"x\">]>\n<a>" + String(repeating: "x", count: 1024)
        input.fileHandleForWriting.write(Data(head.utf8))
        // The pipe stays open until the tool has ended on its own; only a hang runs into the guard.
        let finishedWhileOpen = (try? waitUntilSync("the tool decides while its input is open") { !process.isRunning }) != nil
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(finishedWhileOpen, "the tool waited for the end of input instead of deciding")
        #expect(process.terminationStatus == 1)
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("-:2:13: fatal[input.doctype-forbidden]"))
    }
}
