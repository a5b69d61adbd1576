/// A routing table or municipality list that cannot be used, with the file and line concerned.
public struct RoutingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable codes for configuration problems found at load time.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The routing table file is malformed.
        public static let tableInvalid = Code(rawValue: "config.routing-table-invalid")
        /// Two rules for the same service and area name different Postfächer (or repeat each other).
        public static let tableAmbiguous = Code(rawValue: "config.routing-table-ambiguous")
        /// The municipality list is malformed.
        public static let directoryInvalid = Code(rawValue: "config.municipalities-invalid")
    }

    public var code: Code
    public var file: String
    public var line: Int
    public var message: String

    public init(code: Code, file: String, line: Int, message: String) {
        self.code = code
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file):\(line): error[\(code)]: \(message)" }
}
