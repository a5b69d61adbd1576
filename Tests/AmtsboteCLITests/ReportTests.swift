import AmtsboteTestSupport
import Foundation
import FoundationXML
import Testing

/// The machine and human reports of `validate`, `explain`, and the progress display.
@Suite("Reports: JUnit, SARIF, HTML, explain, progress")
struct ReportTests {
    static let inputs = ["Samples/valid/wohnsitz-anmeldung-koeln.xml", "Samples/invalid/gewerbe-ohne-betrieb.xml",
                         "Samples/invalid/wohnsitz-unmoegliches-datum.xml", "missing.xml"]

    @Test("--format junit: one test case per document, failures and errors counted, warnings in system-out")
    func junit() throws {
        let result = try CLI.run(["validate", "--format", "junit"] + Self.inputs)
        #expect(result.status == 3)
        let document = try XMLDocument(data: Data(result.stdout.utf8))
        let suites = try #require(document.rootElement())
        #expect(suites.name == "testsuites")
        #expect(suites.attribute(forName: "tests")?.stringValue == "4")
        #expect(suites.attribute(forName: "failures")?.stringValue == "2")
        #expect(suites.attribute(forName: "errors")?.stringValue == "1")
        let cases = try document.nodes(forXPath: "//testcase").compactMap { $0 as? XMLElement }
        #expect(cases.map { $0.attribute(forName: "name")?.stringValue ?? "" } == Self.inputs)
        #expect(try document.nodes(forXPath: "//testcase/failure").count == 2)
        let failure = try #require(try document.nodes(forXPath: "//testcase[2]/failure").first as? XMLElement)
        #expect(failure.attribute(forName: "type")?.stringValue == "schema.element.unexpected")
        #expect(failure.attribute(forName: "message")?.stringValue?.hasPrefix("33:15: error[schema.element.unexpected]") == true)
        #expect(try document.nodes(forXPath: "//testcase[4]/error[@type='input.unreadable']").count == 1)
        #expect(try document.nodes(forXPath: "//testcase[1]/system-out").first?.stringValue?.contains("codelist.unknown-list") == true)
    }

    @Test("--format sarif: SARIF 2.1.0, one result per finding with file, line, column and element path")
    func sarif() throws {
        let json = try CLI.run(["validate", "--format", "json"] + Self.inputs)
        let expected = json.stdout.split(separator: "\n").map { line -> Int in
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return (object?["diagnostics"] as? [Any])?.count ?? 0
        }.reduce(0, +)
        let result = try CLI.run(["validate", "--format", "sarif"] + Self.inputs)
        #expect(result.status == 3)
        let log = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(log["version"] as? String == "2.1.0")
        let run = try #require((log["runs"] as? [[String: Any]])?.first)
        let results = try #require(run["results"] as? [[String: Any]])
        #expect(results.count == expected)
        let rules = try #require(((run["tool"] as? [String: Any])?["driver"] as? [String: Any])?["rules"] as? [[String: Any]])
        let ruleIds = rules.compactMap { $0["id"] as? String }
        #expect(Set(ruleIds) == Set(results.compactMap { $0["ruleId"] as? String }) && ruleIds.count == Set(ruleIds).count)
        #expect(rules.allSatisfy { ($0["shortDescription"] as? [String: Any])?["text"] is String }, "every code is in the catalogue")
        let pattern = try #require(results.first { $0["ruleId"] as? String == "schema.value.type" })
        #expect(pattern["level"] as? String == "error")
        let location = try #require((pattern["locations"] as? [[String: Any]])?.first)
        let physical = try #require(location["physicalLocation"] as? [String: Any])
        #expect((physical["artifactLocation"] as? [String: Any])?["uri"] as? String == "Samples/invalid/wohnsitz-unmoegliches-datum.xml")
        let region = try #require(physical["region"] as? [String: Any])
        #expect((region["startLine"] as? Int ?? 0) > 0 && (region["startColumn"] as? Int ?? 0) > 0)
        #expect(((location["logicalLocations"] as? [[String: Any]])?.first?["fullyQualifiedName"] as? String)?.hasPrefix("/wa:wohnsitz.anmeldung.0101/") == true)
        let unreadable = try #require(results.first { $0["ruleId"] as? String == "input.unreadable" })
        let noRegion = ((unreadable["locations"] as? [[String: Any]])?.first?["physicalLocation"] as? [String: Any])?["region"]
        #expect(noRegion == nil, "no line is known, so no region (SARIF lines start at 1)")
    }

    @Test("--report: a self-contained HTML page with totals, frequent codes, every document and its findings")
    func html() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let odd = directory.appendingPathComponent("a&<b>\"c.xml")
        try Data(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Samples/invalid/gewerbe-ohne-betrieb.xml")).write(to: odd)
        let report = directory.appendingPathComponent("report.html")
        let result = try CLI.run(["validate", "--report", report.path, "Samples/valid", "Samples/invalid", odd.path])
        #expect(result.status == 1)
        #expect(result.stdout.hasSuffix("invalid, 0 unreadable\n"), "the normal output is unchanged")
        let html = try String(contentsOf: report, encoding: .utf8)
        let valid = Fixtures.count("Samples/valid"), invalid = Fixtures.count("Samples/invalid") + 1
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.components(separatedBy: "<details class=\"doc ").count - 1 == valid + invalid)
        #expect(html.components(separatedBy: "data-status=\"valid\"").count - 1 == valid)
        #expect(html.components(separatedBy: "data-status=\"invalid\"").count - 1 == invalid)
        #expect(html.contains("<span class=\"n\">\(valid)</span><span>valid</span>"))
        #expect(html.contains("<h2>Most frequent codes</h2>") && html.contains("<table id=\"codes\">"))
        #expect(html.contains("a&amp;&lt;b&gt;&quot;c.xml") && !html.contains("a&<b>"), "file names are escaped")
        #expect(html.contains("<td class=\"num\">33</td><td class=\"num\">15</td><td class=\"code\"><code>schema.element.unexpected</code></td>"))
        #expect(html.contains("id=\"q\"") && html.contains("<script>"), "filterable")
        for external in ["<link", " src=", "href=\"http", "url(http", "@import"] {
            #expect(!html.contains(external), "no external asset: \(external)")
        }
        let unwritable = try CLI.run(["validate", "--report", directory.appendingPathComponent("no/such/folder/r.html").path,
                                      "Samples/valid"])
        #expect(unwritable.status == 2, "an unwritable report path is refused before the batch runs")
        #expect(unwritable.stdout.isEmpty && unwritable.stderr.contains("cannot write the report"))
    }

    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test("the HTML report filters in a real browser (headless Chromium, where installed)",
          .enabled(if: TestEnvironment.canRun(chromium != nil), "no Chromium installed: the browser check is skipped"))
    func htmlInBrowser() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let chromium = try #require(Self.chromium, "Chromium is required where every check must run (scripts/test installs it)")
        let report = directory.appendingPathComponent("report.html")
        _ = try CLI.run(["validate", "--quiet", "--report", report.path, "Samples/valid", "Samples/invalid"])
        let dom = try Fixtures.shell([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                                      report.absoluteString + "#q=schema.identity"]).stdout
        let shown = dom.components(separatedBy: "<details class=\"doc ").count - 1
        let hidden = dom.components(separatedBy: " hidden\"").count - 1
        #expect(shown == Fixtures.count("Samples/valid") + Fixtures.count("Samples/invalid"))
        #expect(dom.contains("1 of \(shown) documents shown"), "the script ran and filtered: \(dom.suffix(400))")
        #expect(hidden == shown - 1)
    }

    @Test("with real-length XÖV namespaces the HTML report stays readable at 1,300 px: prefixed names, a wide path column",
          .enabled(if: TestEnvironment.canRun(chromium != nil), "no Chromium installed: the browser check is skipped"))
    func htmlReadableWithLongNamespaces() throws {
        let chromium = try #require(Self.chromium, "Chromium is required where every check must run (scripts/test installs it)")
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let namespace = "https://gitlab.opencode.de/xoev/xwasser/-/raw/main/V1_0_0"
        let other = "https://gitlab.opencode.de/xoev/anderer-standard/-/raw/main/V2_0_0/ein/langer/pfad"
        try """
            <xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="\(namespace)" elementFormDefault="qualified">
              <xs:element name="probe"><xs:complexType><xs:sequence>
                <xs:element name="probennahmestelleKategorie" type="xs:string"/><xs:element name="kennung" type="xs:string"/>
              </xs:sequence></xs:complexType></xs:element>
            </xs:schema>
            """.write(to: directory.appendingPathComponent("xwasser.xsd"), atomically: true, encoding: .utf8)
        let documents = [
            "<xwas:probe xmlns:xwas=\"\(namespace)\"><xwas:kennung>1</xwas:kennung></xwas:probe>",
            "<xwas:probe xmlns:xwas=\"\(namespace)\"><fremd:x xmlns:fremd=\"\(other)\"/></xwas:probe>",
        ]
        for (index, text) in documents.enumerated() {
            try text.write(to: directory.appendingPathComponent("probe-\(index).xml"), atomically: true, encoding: .utf8)
        }
        let report = directory.appendingPathComponent("report.html")
        let run = try CLI.run(["validate", "--xsd", directory.appendingPathComponent("xwasser.xsd").path, "--report", report.path,
                               directory.appendingPathComponent("probe-0.xml").path, directory.appendingPathComponent("probe-1.xml").path])
        #expect(run.status == 1)
        #expect(run.stdout.contains("Element 'xwas:kennung': This element is not expected. Expected is ( xwas:probennahmestelleKategorie )."),
                "\(run.stdout)")
        #expect(run.stdout.contains("Element 'fremd:x'"), "\(run.stdout)")
        let html = try String(contentsOf: report, encoding: .utf8)
        #expect(!html.contains("gitlab.opencode.de"), "namespace URLs in the findings")
        // Lay the page out at 1,300 px in a real browser and measure the path column of every finding.
        let wrapper = directory.appendingPathComponent("measure.html")
        try """
            <!DOCTYPE html><html><body><iframe id="f" src="report.html" style="width:1300px;height:900px;border:0"></iframe>
            <pre id="out">pending</pre><script>
            document.getElementById('f').onload = function () {
              var cells = Array.prototype.slice.call(document.getElementById('f').contentDocument.querySelectorAll('td.path'));
              document.getElementById('out').textContent = 'widths:' + cells.map(function (c) { return Math.round(c.getBoundingClientRect().width); }).join(',');
            };
            </script></body></html>
            """.write(to: wrapper, atomically: true, encoding: .utf8)
        let dom = try Fixtures.shell([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                                      "--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom", wrapper.absoluteString]).stdout
        let widths = try #require(dom.components(separatedBy: "widths:").dropFirst().first?.prefix { $0 != "<" },
                                  "the measuring script did not run: \(dom.suffix(300))")
        let numbers = widths.split(separator: ",").compactMap { Int($0) }
        #expect(numbers.count == 2, "\(widths)")
        #expect(numbers.allSatisfy { $0 >= 190 }, "the path column is squeezed: \(numbers) px")
    }

    @Test("explain: meaning and fix of a code, every code of a prefix, exit 2 for an unknown one")
    func explain() throws {
        let one = try CLI.run(["explain", "codelist.value-unknown"])
        #expect(one.status == 0)
        #expect(one.stdout.hasPrefix("codelist.value-unknown  (Code lists"))
        #expect(one.stdout.contains("What it means: the code is not in the list"))
        #expect(one.stdout.contains("How to fix:    use a code of that list version"))
        let prefix = try CLI.run(["explain", "postfach"])
        let documented = try String(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Docs/diagnostics.md"), encoding: .utf8)
            .components(separatedBy: "\n| `postfach.").count - 1
        #expect(documented >= 9)
        #expect(prefix.stdout.components(separatedBy: "\n\n").count == documented, "every postfach.* code")
        let unknown = try CLI.run(["explain", "schema.nonsense"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("unknown code 'schema.nonsense'"))
    }

    @Test("explain --list names exactly the codes Docs/diagnostics.md documents, and every code the sources use")
    func catalogueMatchesDocument() throws {
        let listed = try CLI.run(["explain", "--list"]).stdout.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
        let document = try String(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Docs/diagnostics.md"), encoding: .utf8)
        var documented: [String] = []
        for line in document.split(separator: "\n") where line.hasPrefix("| `") {
            let first = line.dropFirst(2).prefix { $0 != "|" }
            documented += first.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        }
        #expect(listed == documented, "run scripts/make-diagnostic-catalog.py after editing Docs/diagnostics.md")
        let sources = try Fixtures.quotedCodes(in: TestEnvironment.projectRoot.appendingPathComponent("Sources"))
        #expect(sources.subtracting(listed).isEmpty, "codes used but not documented: \(sources.subtracting(listed).sorted())")
    }

    @Test("progress on a terminal: drawn as soon as the delay has passed, at any speed; silent when not a terminal, with --quiet, or for a batch that ends first")
    func progress() throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let sample = try Data(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Samples/valid/wohnsitz-anmeldung-koeln.xml"))
        for index in 0..<3 { try sample.write(to: directory.appendingPathComponent(String(format: "doc-%04d.xml", index))) }
        let plain = try CLI.run(["validate", "--jobs", "1", "--no-code-lists", directory.path],
                                environment: ["AMTSBOTE_PROGRESS_AFTER": "0"])
        #expect(plain.status == 0)
        #expect(!plain.stderr.contains("files/s"), "no progress when standard error is not a terminal")
        // `script` gives the tool a pseudo-terminal; its transcript holds what the terminal showed. With no delay the
        // first file done draws the line, however fast the machine: three files finish in a few milliseconds.
        func onTerminal(after delay: String, quiet: Bool = false) throws -> String {
            let command = "AMTSBOTE_PROGRESS_AFTER=\(delay) \(CLI.binary.path) validate \(quiet ? "--quiet " : "")--jobs 1 --no-code-lists \(directory.path) >/dev/null"
            return try Fixtures.shell(["TERM=xterm", "script", "-qec", command, "/dev/null"]).stdout
        }
        let shown = try onTerminal(after: "0")
        #expect(shown.contains("validated 1 of 3 · "), "\(shown.suffix(300))")
        #expect(shown.contains("files/s"))
        #expect(!(try onTerminal(after: "0", quiet: true)).contains("files/s"), "nothing with --quiet")
        #expect(!(try onTerminal(after: "3600")).contains("validated "), "a batch that ends before the delay shows nothing")
    }
}

enum Fixtures {
    /// Runs a command through env(1); standard output only.
    static func shell(_ arguments: [String]) throws -> (status: Int32, stdout: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.currentDirectoryURL = TestEnvironment.projectRoot
        let out = try ProcessStart.serialized {
            let out = Pipe()
            process.standardOutput = out
            process.standardInput = FileHandle.nullDevice
            try process.run()
            return out
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func count(_ folder: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: TestEnvironment.projectRoot.appendingPathComponent(folder).path)) ?? [])
            .filter { $0.hasSuffix(".xml") }.count
    }

    /// Every string literal in the sources that looks like a diagnostic code (`family.name`).
    static func quotedCodes(in directory: URL) throws -> Set<String> {
        let families = ["input", "xml", "schema", "codelist", "config", "route", "postfach", "intake", "spool", "ledger", "service",
                        "report", "validation"]
        var codes: Set<String> = []
        let files = FileManager.default.enumerator(atPath: directory.path)?.compactMap { $0 as? String } ?? []
        for file in files where file.hasSuffix(".swift") || file.hasSuffix(".c") {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            let regex = try NSRegularExpression(pattern: "\"((?:\(families.joined(separator: "|")))\\.[a-z][a-z0-9.-]*[a-z])\"")
            for match in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                if let range = Range(match.range(at: 1), in: text) { codes.insert(String(text[range])) }
            }
        }
        return codes
    }
}
