/// The qualified name of a document's root element.
public struct RootElement: Sendable, Codable, Hashable, CustomStringConvertible {
    /// Namespace URI; empty when the root has no namespace.
    public var namespace: String
    /// Local name.
    public var name: String

    /// Creates a root element name.
    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    /// Clark notation: `{namespace}name`.
    public var description: String { namespace.isEmpty ? name : "{\(namespace)}\(name)" }
}

/// The outcome of validating one document.
public enum Verdict: String, Sendable, Codable {
    /// Well-formed and valid against the schema selected for its root element.
    case valid
    /// Not well-formed, refused by a limit or the safe profile, without a schema, or invalid against its schema.
    case invalid
}

/// What validating one document found. An invalid document is a result, not an error.
public struct ValidationReport: Sendable, Codable, Hashable {
    /// The document's name as given by the caller (a path, or `-` for standard input).
    public var document: String
    /// Valid or invalid.
    public var verdict: Verdict
    /// Identifier of the schema entry that validated the document, if one was selected.
    public var schema: String?
    /// The root element, if the document got that far.
    public var root: RootElement?
    /// Findings in document order.
    public var diagnostics: [Diagnostic]
    /// Bytes read from the document.
    public var bytes: Int64
    /// Element texts captured in the same pass (see ``SchemaManifest/Entry/captures``), whitespace-trimmed; a name
    /// is absent when its element did not occur. Raw document data: check before use, never log.
    public var captured: [String: String]

    /// Creates a report.
    public init(document: String, verdict: Verdict, schema: String?, root: RootElement?,
                diagnostics: [Diagnostic], bytes: Int64, captured: [String: String] = [:]) {
        self.document = document
        self.verdict = verdict
        self.schema = schema
        self.root = root
        self.diagnostics = diagnostics
        self.bytes = bytes
        self.captured = captured
    }

    /// `true` when the verdict is `.valid`.
    public var isValid: Bool { verdict == .valid }

    /// Findings of severity error or fatal.
    public var errors: [Diagnostic] { diagnostics.filter { $0.severity >= .error } }
}
