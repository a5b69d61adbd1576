/// Validation could not run: the input or the configuration is unusable. (An invalid document is not an error.)
public struct ValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable codes for the reasons validation could not run.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A document could not be opened or read.
        public static let inputUnreadable = Code(rawValue: "input.unreadable")
        /// A schema manifest could not be read or is malformed.
        public static let manifestInvalid = Code(rawValue: "config.manifest-invalid")
        /// A catalog named by the manifest could not be loaded.
        public static let catalogUnreadable = Code(rawValue: "config.catalog-unreadable")
        /// A folder of code lists could not be read.
        public static let codeListsUnreadable = Code(rawValue: "config.code-lists-unreadable")
        /// No schema of the set could be compiled.
        public static let noUsableSchema = Code(rawValue: "config.no-usable-schema")
    }

    /// Why validation could not run.
    public var code: Code
    /// The file concerned.
    public var file: String
    /// Human-readable explanation.
    public var message: String
    /// The findings behind the error, each with its own file and line (for example every schema that failed).
    public var findings: [Diagnostic]

    /// Creates an error.
    public init(code: Code, file: String, message: String, findings: [Diagnostic] = []) {
        self.code = code
        self.file = file
        self.message = message
        self.findings = findings
    }

    public var description: String {
        (["\(file): error[\(code)]: \(message)"] + findings.map { d in
            "\(d.file ?? file):\(d.line):\(d.column): \(d.severity.rawValue)[\(d.code)]: \(d.message)"
        }).joined(separator: "\n")
    }
}
