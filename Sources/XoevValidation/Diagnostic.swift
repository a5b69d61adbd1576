/// How serious a finding is.
public enum Severity: String, Sendable, Codable, Comparable {
    /// Worth reading; does not make a document invalid.
    case warning
    /// Makes the document invalid.
    case error
    /// Made the validator stop reading the document.
    case fatal

    private var rank: Int {
        switch self {
        case .warning: 0
        case .error: 1
        case .fatal: 2
        }
    }

    public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
}

/// One finding about a document or a schema: where it is, a stable code, and a message for people.
///
/// `code` is stable across releases (see `Docs/diagnostics.md`); `message` may change wording. Messages from the
/// schema validator can quote the offending value, which is personal data in a submission: log the code and the
/// location, not the message.
public struct Diagnostic: Sendable, Codable, Hashable {
    /// How serious the finding is.
    public var severity: Severity
    /// Stable machine-readable code such as `schema.value.pattern`.
    public var code: String
    /// 1-based line, 0 when unknown.
    public var line: Int
    /// 1-based column, 0 when unknown.
    public var column: Int
    /// Path to the element concerned, such as `/wa:antrag/wa:person[2]`; empty when not inside an element.
    public var path: String
    /// Human-readable explanation.
    public var message: String
    /// The file the finding is in when it is not the document itself (a schema file at load time).
    public var file: String?
    /// The names `message` quotes, expanded (namespace URI and local name) with the document's prefix; the
    /// message itself shows them with that prefix (``ExpandedName/display``).
    public var names: [ExpandedName]

    /// Creates a finding.
    public init(severity: Severity, code: String, line: Int = 0, column: Int = 0, path: String = "",
                message: String, file: String? = nil, names: [ExpandedName] = []) {
        self.severity = severity
        self.code = code
        self.line = line
        self.column = column
        self.path = path
        self.message = message
        self.file = file
        self.names = names
    }

    enum CodingKeys: String, CodingKey { case severity, code, line, column, path, message, file, names }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(severity: try c.decode(Severity.self, forKey: .severity), code: try c.decode(String.self, forKey: .code),
                  line: try c.decodeIfPresent(Int.self, forKey: .line) ?? 0,
                  column: try c.decodeIfPresent(Int.self, forKey: .column) ?? 0,
                  path: try c.decodeIfPresent(String.self, forKey: .path) ?? "",
                  message: try c.decode(String.self, forKey: .message),
                  file: try c.decodeIfPresent(String.self, forKey: .file),
                  names: try c.decodeIfPresent([ExpandedName].self, forKey: .names) ?? [])
    }
}
