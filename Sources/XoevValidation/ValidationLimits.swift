/// Limits enforced while a document's bytes arrive, so hostile input is refused early and cheaply.
///
/// The defaults form the safe profile for submissions. `0` switches the byte and text limits off.
public struct ValidationLimits: Sendable, Hashable, Codable {
    /// Largest accepted document in bytes (default 100 MiB).
    public var maxBytes: Int64
    /// Deepest accepted element nesting (default 256, libxml2's own default for its other parsers).
    public var maxDepth: Int
    /// Most attributes plus namespace declarations on one start tag (default 256). Checked on the raw bytes before
    /// libxml2 sees them, because libxml2 2.9.14 checks duplicate attributes in quadratic time.
    public var maxAttributes: Int
    /// Longest text node in bytes (default 10 MiB, libxml2's XML_MAX_TEXT_LENGTH).
    public var maxTextBytes: Int64
    /// Most findings listed per document before the list is truncated (default 100).
    public var maxDiagnostics: Int
    /// Longest time one document may take, from its first byte (default 30 s; `.zero` = no limit). A document over
    /// the limit ends as `input.timeout`; the others of a batch are not affected.
    public var timeLimit: Duration

    /// Creates limits; every parameter defaults to the safe profile.
    public init(maxBytes: Int64 = 100 << 20, maxDepth: Int = 256, maxAttributes: Int = 256,
                maxTextBytes: Int64 = 10 << 20, maxDiagnostics: Int = 100, timeLimit: Duration = .seconds(30)) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
        self.maxAttributes = maxAttributes
        self.maxTextBytes = maxTextBytes
        self.maxDiagnostics = maxDiagnostics
        self.timeLimit = timeLimit
    }

    /// The safe profile for citizen submissions.
    public static let safeProfile = ValidationLimits()
}
