import Foundation
import XoevValidation

/// The result for one input: a report, or the reason it could not be read.
public enum Outcome: Sendable {
    case report(ValidationReport)
    case unreadable(document: String, code: String, message: String)
}

/// Counts outcomes: valid, invalid, unreadable.
public struct Tally: Sendable, Hashable {
    public var valid = 0
    public var invalid = 0
    public var unreadable = 0

    public init() {}

    /// Counts one outcome.
    public mutating func count(_ outcome: Outcome) {
        switch outcome {
        case .report(let report): if report.isValid { valid += 1 } else { invalid += 1 }
        case .unreadable: unreadable += 1
        }
    }

    /// The exit code of a validation batch: 3 when an input was unreadable, else 1 when a document was invalid,
    /// else 0 (`amtsbote validate`, and the SARIF invocation record).
    public var exitCode: Int32 { unreadable > 0 ? 3 : invalid > 0 ? 1 : 0 }
}

/// Writes outcomes as they come, in input order, and the summary (or the whole report) at the end.
public protocol Reporter {
    /// One document's outcome.
    mutating func write(_ outcome: Outcome)
    /// The batch is over: write what is left and flush.
    mutating func finish(_ tally: Tally)
}

/// Where a reporter's text goes: standard output, a string, anything that takes text.
public protocol TextSink {
    mutating func append(_ text: String)
    mutating func flush()
}

/// Collects a report's text in memory (for embedders and tests); a class, so the caller keeps a handle.
public final class TextBuffer: TextSink {
    /// Everything written so far.
    public private(set) var text = ""
    public init() {}
    public func append(_ text: String) { self.text += text }
    public func flush() {}
}

/// Buffered standard output: one write per few documents, not per line.
public struct StandardOutput: TextSink {
    private var buffer: [UInt8] = []

    public init() {}

    public mutating func append(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= 64 * 1024 { flush() }
    }

    /// One JSON line; if encoding ever failed, a line saying so instead of silently leaving the record out.
    public static func jsonLine(_ value: some Encodable, encoder: JSONEncoder) -> String {
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
        } catch {
            return #"{"status":"error","reason":"a record could not be encoded as JSON"}"# + "\n"
        }
    }

    /// The encoder of every JSON Lines output: sorted keys, slashes as they are.
    public static func jsonLineEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public mutating func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Foundation.write(STDOUT_FILENO, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 { if errno == EINTR { continue }; return }
                offset += written
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Writes nothing (`--quiet`).
public struct SilentReporter: Reporter {
    public init() {}
    public mutating func write(_ outcome: Outcome) {}
    public mutating func finish(_ tally: Tally) {}
}

/// `file:line:col: severity[code]: message (path)` per finding, `file: valid [schema]` per valid document, and a
/// summary line.
public struct TextReporter: Reporter {
    private var out: any TextSink

    /// Writes to `output` (standard output by default).
    public init(output: any TextSink = StandardOutput()) { out = output }

    public mutating func write(_ outcome: Outcome) {
        switch outcome {
        case .report(let report):
            if report.isValid {
                out.append("\(report.document): valid [\(report.schema ?? "-")]\n")
            }
            for d in report.diagnostics {
                let place = d.path.isEmpty ? "" : " (\(d.path))"
                out.append("\(report.document):\(d.line):\(d.column): \(d.severity.rawValue)[\(d.code)]: \(d.message)\(place)\n")
            }
        case .unreadable(let document, let code, let message):
            out.append("\(document):0:0: error[\(code)]: \(message)\n")
        }
    }

    public mutating func finish(_ tally: Tally) {
        let total = tally.valid + tally.invalid + tally.unreadable
        out.append("\(total) document\(total == 1 ? "" : "s"): \(tally.valid) valid, \(tally.invalid) invalid, \(tally.unreadable) unreadable\n")
        out.flush()
    }
}

/// One JSON object per document and line (JSON Lines); the format is documented in Docs/json-output.md.
public struct JSONLinesReporter: Reporter {
    private var out: any TextSink
    private let encoder = StandardOutput.jsonLineEncoder()

    /// Writes to `output` (standard output by default).
    public init(output: any TextSink = StandardOutput()) { out = output }

    public mutating func write(_ outcome: Outcome) {
        let record: DocumentRecord = switch outcome {
        case .report(let report):
            DocumentRecord(document: report.document, status: report.verdict.rawValue, schema: report.schema,
                           root: report.root, bytes: report.bytes, diagnostics: report.diagnostics)
        case .unreadable(let document, let code, let message):
            DocumentRecord(document: document, status: "unreadable", schema: nil, root: nil, bytes: 0,
                           diagnostics: [Diagnostic(severity: .fatal, code: code, message: message)])
        }
        out.append(StandardOutput.jsonLine(record, encoder: encoder))
    }

    public mutating func finish(_ tally: Tally) { out.flush() }
}

/// The JSON object written per document. Every key is always present (null when unknown).
struct DocumentRecord: Encodable {
    var formatVersion = 1
    var document: String
    var status: String
    var schema: String?
    var root: RootElement?
    var bytes: Int64
    var diagnostics: [Diagnostic]

    enum CodingKeys: String, CodingKey {
        case formatVersion, document, status, schema, root, bytes, diagnostics
    }

    enum DiagnosticKeys: String, CodingKey {
        case severity, code, line, column, path, message, names
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(document, forKey: .document)
        try c.encode(status, forKey: .status)
        try c.encode(schema, forKey: .schema)
        try c.encode(root, forKey: .root)
        try c.encode(bytes, forKey: .bytes)
        var list = c.nestedUnkeyedContainer(forKey: .diagnostics)
        for d in diagnostics {
            var item = list.nestedContainer(keyedBy: DiagnosticKeys.self)
            try item.encode(d.severity, forKey: .severity)
            try item.encode(d.code, forKey: .code)
            try item.encode(d.line, forKey: .line)
            try item.encode(d.column, forKey: .column)
            try item.encode(d.path, forKey: .path)
            try item.encode(d.message, forKey: .message)
            try item.encode(d.names, forKey: .names)
        }
    }
}
