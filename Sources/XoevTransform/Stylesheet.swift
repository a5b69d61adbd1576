import CXSLTShim
import Crypto
import Foundation

/// An XSLT 1.0 stylesheet, compiled once and used by any number of threads at once. It may read only files in its
/// own folder (imports, includes, `document()`), never the network, and writes nothing; a stylesheet or document
/// with a DOCTYPE is refused.
public final class Stylesheet: @unchecked Sendable {
    // Safety: the compiled stylesheet is never changed after compiling; libxslt reads it from many threads.
    /// The stylesheet's path, as given.
    public let path: String
    /// SHA-256 of the stylesheet file as compiled (lower-case hex), for the ledger's record of what ran.
    public let sha256: String
    let handle: OpaquePointer

    /// Compiles the stylesheet at `path`.
    /// - Throws: ``TransformError`` with code `config.stylesheet-invalid`, naming the file and line of the first
    ///   problem (not readable, not well-formed, a DOCTYPE, an import from outside its folder, no valid XSLT).
    public init(path: String) throws {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw TransformError(code: .stylesheetInvalid, file: path, line: 0, message: "the stylesheet cannot be read")
        }
        let messages = Messages()
        guard let handle = axt_stylesheet_compile(path, Messages.callback, Unmanaged.passUnretained(messages).toOpaque()) else {
            let first = messages.first
            throw TransformError(code: .stylesheetInvalid, file: first?.file ?? path, line: first?.line ?? 0,
                                 message: messages.summary(or: "the stylesheet cannot be compiled"))
        }
        self.path = path
        self.handle = handle
        sha256 = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    deinit { axt_stylesheet_free(handle) }

    /// Transforms `input` and returns the serialised output.
    /// - Parameters:
    ///   - parameters: top-level `xsl:param` values, passed as strings (never evaluated as XPath).
    ///   - limits: the time and output-size limits of this run.
    /// - Throws: ``TransformError``: `transform.input-refused`, `transform.access-refused`, `transform.timeout`,
    ///   `transform.output-too-large` or `transform.failed`.
    public func transform(_ input: Data, parameters: [String: String] = [:], limits: TransformLimits = TransformLimits()) throws -> Data {
        let messages = Messages()
        let output = OutputCollector()
        let names = parameters.keys.sorted()
        let values = names.map { parameters[$0] ?? "" }
        let status = withCStrings(names) { namePointers in
            withCStrings(values) { valuePointers in
                input.withUnsafeBytes { raw in
                    axt_transform(handle, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count,
                                  namePointers, valuePointers, Int32(names.count),
                                  limits.maxOutputBytes, Int(limits.timeout.components.seconds * 1000
                                                             + limits.timeout.components.attoseconds / 1_000_000_000_000_000),
                                  OutputCollector.callback, Unmanaged.passUnretained(output).toOpaque(),
                                  Messages.callback, Unmanaged.passUnretained(messages).toOpaque())
                }
            }
        }
        let file = messages.first?.file ?? path, line = messages.first?.line ?? 0
        switch status {
        case AXT_OK:
            return output.data
        case AXT_INPUT_REFUSED:
            throw TransformError(code: .inputRefused, file: path, line: 0, message: messages.summary(or: "the input was refused"))
        case AXT_ACCESS_REFUSED:
            throw TransformError(code: .accessRefused, file: path, line: line,
                                 message: messages.summary(or: "the stylesheet tried to read, write or reach the network"))
        case AXT_TIMEOUT:
            throw TransformError(code: .timeout, file: path, line: 0,
                                 message: "stopped after \(limits.timeout)")
        case AXT_OUTPUT_TOO_LARGE:
            throw TransformError(code: .outputTooLarge, file: path, line: 0,
                                 message: "the output grew past \(limits.maxOutputBytes) bytes")
        default:
            throw TransformError(code: .failed, file: file, line: line, message: messages.summary(or: "the transformation failed"))
        }
    }

    /// The libxslt version in use.
    public static var libxsltVersion: String { String(cString: axt_libxslt_version()) }
}

/// How long one transformation may run and how much it may write.
public struct TransformLimits: Sendable, Hashable {
    public var timeout: Duration
    /// At most this many bytes of output (0: no limit).
    public var maxOutputBytes: Int64

    public init(timeout: Duration = .seconds(10), maxOutputBytes: Int64 = 64 << 20) {
        self.timeout = timeout
        self.maxOutputBytes = maxOutputBytes
    }
}

/// Why a stylesheet did not compile or a transformation did not produce output. Messages are libxslt's words
/// about the stylesheet; the text of an `xsl:message`, which may quote the input, is never included.
public struct TransformError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A stylesheet of the configuration cannot be compiled (configuration error, exit 2).
        public static let stylesheetInvalid = Code(rawValue: "config.stylesheet-invalid")
        /// The stylesheet failed at run time: an XPath error, `xsl:message terminate="yes"`, endless recursion.
        public static let failed = Code(rawValue: "transform.failed")
        /// The stylesheet tried to read a file outside its folder, reach the network, or write.
        public static let accessRefused = Code(rawValue: "transform.access-refused")
        /// The transformation ran past its time limit and was stopped.
        public static let timeout = Code(rawValue: "transform.timeout")
        /// The output grew past its size limit.
        public static let outputTooLarge = Code(rawValue: "transform.output-too-large")
        /// The input is not well-formed or has a DOCTYPE.
        public static let inputRefused = Code(rawValue: "transform.input-refused")
        /// The output is not valid against the transformation's target schema.
        public static let outputInvalid = Code(rawValue: "transform.output-invalid")
    }

    public var code: Code
    /// The stylesheet file the problem concerns.
    public var file: String
    /// Its line; 0 when unknown.
    public var line: Int
    public var message: String

    public init(code: Code, file: String, line: Int, message: String) {
        self.code = code
        self.file = file
        self.line = line
        self.message = message
    }

    /// Whether trying again can help: only a run stopped by its time limit (a busy machine).
    public var isTransient: Bool { code == .timeout }

    public var description: String { "\(file)\(line > 0 ? ":\(line)" : ""): \(code): \(message)" }
}

/// The messages of one compile or run.
final class Messages: @unchecked Sendable {
    // Safety: written only by the thread running the compile or transformation, read after it returns.
    struct Message { var file: String?; var line: Int; var text: String }
    var all: [Message] = []

    static let callback: axt_message_fn = { context, file, line, text in
        let messages = Unmanaged<Messages>.fromOpaque(context!).takeUnretainedValue()
        guard messages.all.count < 20 else { return }
        messages.all.append(Message(file: file.map { String(cString: $0) }, line: Int(line),
                                    text: text.map { String(cString: $0) } ?? ""))
    }

    /// The first message that names a place, else the first one.
    var first: Message? { all.first { $0.line > 0 } ?? all.first }

    func summary(or fallback: String) -> String {
        let texts = all.map(\.text).filter { !$0.isEmpty }
        return texts.isEmpty ? fallback : String(texts.prefix(3).joined(separator: "; ").prefix(1000))
    }
}

/// Collects the output of one run.
final class OutputCollector: @unchecked Sendable {
    // Safety: written only by the thread running the transformation, read after it returns.
    var data = Data()

    static let callback: axt_write_fn = { context, bytes, length in
        let collector = Unmanaged<OutputCollector>.fromOpaque(context!).takeUnretainedValue()
        if let bytes, length > 0 { collector.data.append(UnsafeRawPointer(bytes).assumingMemoryBound(to: UInt8.self), count: Int(length)) }
        return 0
    }
}

/// `body` with C strings of `strings` (valid only inside).
func withCStrings<T>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> T) -> T {
    let duplicates = strings.map { strdup($0) }
    defer { duplicates.forEach { free($0) } }
    let pointers = duplicates.map { UnsafePointer($0) }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}
