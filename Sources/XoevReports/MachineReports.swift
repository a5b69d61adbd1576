import Foundation
import XoevValidation

/// What a whole-batch report keeps per document until the end (the formats below need totals up front).
struct DocumentSummary {
    var document: String
    var status: String
    var schema: String?
    var diagnostics: [Diagnostic]

    init(_ outcome: Outcome) {
        switch outcome {
        case .report(let report):
            document = report.document
            status = report.verdict.rawValue
            schema = report.schema
            diagnostics = report.diagnostics
        case .unreadable(let document, let code, let message):
            self.document = document
            status = "unreadable"
            schema = nil
            diagnostics = [Diagnostic(severity: .fatal, code: code, message: message)]
        }
    }

    var errors: [Diagnostic] { diagnostics.filter { $0.severity >= .error } }
    var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
}

/// Text fit for XML content and attribute values: markup characters escaped, characters XML 1.0 forbids dropped.
func xmlEscaped(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
        default:
            if scalar.value < 0x20 || scalar.value == 0xFFFE || scalar.value == 0xFFFF { continue }
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

/// One line per finding, as in the text output.
func findingLine(_ d: Diagnostic) -> String {
    (d.line > 0 ? "\(d.line):\(d.column): " : "") + "\(d.severity.rawValue)[\(d.code)]: \(d.message)"
        + (d.path.isEmpty ? "" : " (\(d.path))")
}

/// JUnit XML: one test case per document (`failure` when invalid, `error` when unreadable), for CI systems.
public struct JUnitReporter: Reporter {
    private var documents: [DocumentSummary] = []
    private var out: any TextSink

    /// Writes to `output` (standard output by default) when the batch ends.
    public init(output: any TextSink = StandardOutput()) { out = output }

    public mutating func write(_ outcome: Outcome) { documents.append(DocumentSummary(outcome)) }

    public mutating func finish(_ tally: Tally) {
        let counts = "tests=\"\(documents.count)\" failures=\"\(tally.invalid)\" errors=\"\(tally.unreadable)\""
        out.append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        out.append("<testsuites name=\"amtsbote validate\" \(counts)>\n")
        out.append("  <testsuite name=\"amtsbote validate\" \(counts) skipped=\"0\" timestamp=\"\(ISO8601DateFormatter().string(from: Date()))\">\n")
        for doc in documents {
            let name = xmlEscaped(doc.document)
            out.append("    <testcase classname=\"\(xmlEscaped(doc.schema ?? "no-schema"))\" name=\"\(name)\" file=\"\(name)\">\n")
            if let first = doc.errors.first {
                let element = doc.status == "unreadable" ? "error" : "failure"
                out.append("      <\(element) type=\"\(xmlEscaped(first.code))\" message=\"\(xmlEscaped(findingLine(first)))\">")
                out.append(xmlEscaped(doc.errors.map(findingLine).joined(separator: "\n")))
                out.append("</\(element)>\n")
            }
            if !doc.warnings.isEmpty {
                out.append("      <system-out>\(xmlEscaped(doc.warnings.map(findingLine).joined(separator: "\n")))</system-out>\n")
            }
            out.append("    </testcase>\n")
        }
        out.append("  </testsuite>\n</testsuites>\n")
        out.flush()
    }
}

/// SARIF 2.1.0: one result per finding with its physical location (file, line, column) and the element path as
/// logical location; the rules are the codes that occurred, described from the diagnostic catalogue.
public struct SARIFReporter: Reporter {
    private var documents: [DocumentSummary] = []
    private var out: any TextSink

    /// Writes to `output` (standard output by default) when the batch ends.
    public init(output: any TextSink = StandardOutput()) { out = output }

    public mutating func write(_ outcome: Outcome) { documents.append(DocumentSummary(outcome)) }

    public mutating func finish(_ tally: Tally) {
        var results: [[String: Any]] = []
        var codes: [String] = []
        var seen: Set<String> = []
        for doc in documents {
            for d in doc.diagnostics {
                if seen.insert(d.code).inserted { codes.append(d.code) }
                var physical: [String: Any] = ["artifactLocation": ["uri": Self.uri(doc.document)]]
                if d.line > 0 {
                    var region: [String: Any] = ["startLine": d.line]
                    if d.column > 0 { region["startColumn"] = d.column }
                    physical["region"] = region
                }
                var location: [String: Any] = ["physicalLocation": physical]
                if !d.path.isEmpty { location["logicalLocations"] = [["fullyQualifiedName": d.path, "kind": "element"]] }
                var result: [String: Any] = [
                    "ruleId": d.code,
                    "level": d.severity == .warning ? "warning" : "error",
                    "message": ["text": d.message.isEmpty ? d.code : d.message],
                    "locations": [location],
                ]
                if let schema = doc.schema { result["properties"] = ["schema": schema] }
                results.append(result)
            }
        }
        let rules: [[String: Any]] = codes.map { code in
            var rule: [String: Any] = ["id": code]
            if let entry = DiagnosticCatalog.byCode[code] {
                rule["shortDescription"] = ["text": entry.meaning]
                if !entry.fix.isEmpty { rule["help"] = ["text": entry.fix] }
            }
            return rule
        }
        let log: [String: Any] = [
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [[
                "tool": ["driver": ["name": "amtsbote",
                                    "rules": rules]],
                "invocations": [["executionSuccessful": true, "exitCode": tally.exitCode]],
                "results": results,
            ]],
        ]
        if let data = try? JSONSerialization.data(withJSONObject: log, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]) {
            out.append(String(decoding: data, as: UTF8.self) + "\n")
        } else {
            out.append(#"{"version":"2.1.0","runs":[],"error":"the log could not be encoded"}"# + "\n")
        }
        out.flush()
    }

    /// A relative URI reference for a path (percent-encoded), `-` for standard input.
    static func uri(_ path: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: ";?#")
        return path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path
    }
}
