import CXMLShim
import Foundation

/// Validates documents against a ``SchemaSet`` while streaming, under ``ValidationLimits``.
///
/// A validator is a small value: copy it freely and use it from many threads at once; every document gets its
/// own parser and validation context, and all share the compiled schemas.
///
/// ```swift
/// let schemas = try SchemaSet(manifestAt: "Schemas")
/// let validator = Validator(schemas: schemas)
/// let report = try validator.validate(file: "Samples/valid/wohnsitz-anmeldung-koeln.xml")
/// for d in report.diagnostics { print(d.line, d.code, d.path) }
/// ```
public struct Validator: Sendable {
    /// The schemas documents are validated against.
    public let schemas: SchemaSet
    /// Limits applied to every document.
    public var limits: ValidationLimits
    /// Code lists to check XÖV code elements against; `nil` (or an empty catalog): codes are not checked.
    public var codeLists: CodeListCatalog?

    /// Size of each read from a file or stream.
    public static let readChunkSize = 256 * 1024

    /// Creates a validator.
    public init(schemas: SchemaSet, limits: ValidationLimits = .safeProfile, codeLists: CodeListCatalog? = nil) {
        self.schemas = schemas
        self.limits = limits
        self.codeLists = codeLists
    }

    /// Starts an incremental validation: feed the bytes as they arrive, then call ``DocumentValidation/finish()``.
    public func startDocument(named name: String) -> DocumentValidation {
        let checking = (codeLists?.count ?? 0) > 0
        return DocumentValidation(name: name, schemas: schemas, limits: limits, codeLists: checking ? codeLists : nil)
    }

    /// Validates a document held in memory.
    public func validate(bytes: some Collection<UInt8>, named name: String) -> ValidationReport {
        let document = startDocument(named: name)
        let contiguous = Array(bytes)
        contiguous.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let end = min(offset + Self.readChunkSize, buffer.count)
                if document.feed(UnsafeRawBufferPointer(rebasing: buffer[offset..<end])) { break }
                offset = end
            }
        }
        return document.finish()
    }

    /// Validates a file, streaming it from disk.
    ///
    /// - Parameter name: how the document is named in the report (default: `path`).
    /// - Throws: ``ValidationError`` with code `input.unreadable` when the file cannot be opened or read.
    public func validate(file path: String, named name: String? = nil) throws -> ValidationReport {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ValidationError(code: .inputUnreadable, file: name ?? path, message: Self.errnoMessage("cannot open"))
        }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            throw ValidationError(code: .inputUnreadable, file: name ?? path, message: "is a directory")
        }
        return try validate(fileDescriptor: fd, named: name ?? path)
    }

    /// Validates everything readable from a file descriptor (a file, pipe or socket) until end of input. The
    /// descriptor is not closed. Nothing is buffered beyond one read.
    ///
    /// - Throws: ``ValidationError`` with code `input.unreadable` when reading fails.
    public func validate(fileDescriptor fd: Int32, named name: String) throws -> ValidationReport {
        let document = startDocument(named: name)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readChunkSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                let message = Self.errnoMessage("read failed")
                _ = document.finish()
                throw ValidationError(code: .inputUnreadable, file: name, message: message)
            }
            if count == 0 { break }
            if document.feed(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) { break }
        }
        return document.finish()
    }

    /// The libxml2 version loaded at run time, such as `2.9.14` (what the process really uses, which can differ
    /// from the headers it was built with when libxml2 is linked dynamically).
    public static var libxml2Version: String {
        let digits = String(cString: axs_libxml2_version()).prefix { $0.isNumber }
        guard let number = Int(digits) else { return "unknown" }
        return "\(number / 10000).\(number / 100 % 100).\(number % 100)"
    }

    /// How many times, in this process, libxml2 asked for an external resource (entity, DTD, XInclude) while
    /// parsing a document, and was refused. Stays 0 for the safe profile; tests use it to prove nothing is loaded.
    public static var refusedExternalLoads: UInt64 { axs_refused_instance_loads() }

    /// ``refusedExternalLoads`` counted for the calling thread only: a synchronous validation runs on one thread, so
    /// this proves what one document did even while other threads validate (or refuse) at the same time.
    public static var refusedExternalLoadsOnThisThread: UInt64 { axs_refused_instance_loads_on_this_thread() }

    /// Sets libxml2's process-wide entity-substitution default (`xmlSubstituteEntitiesDefault`), as other
    /// libraries in the same process may. For tests proving the safe profile does not depend on it.
    @discardableResult
    public static func setProcessEntitySubstitutionDefault(_ on: Bool) -> Bool {
        axs_test_set_substitute_entities_default(on ? 1 : 0) != 0
    }

    static func errnoMessage(_ prefix: String) -> String {
        "\(prefix): \(String(cString: strerror(errno)))"
    }
}

/// One document being validated incrementally. Not thread-safe: feed it from one task at a time.
public final class DocumentValidation {
    private let context: DocumentContext
    private var handle: OpaquePointer?
    private var report: ValidationReport?
    private let codeLists: CodeListCatalog?

    init(name: String, schemas: SchemaSet, limits: ValidationLimits, codeLists: CodeListCatalog?) {
        self.codeLists = codeLists
        context = DocumentContext(schemas: schemas)
        var cLimits = axs_limits(
            max_bytes: limits.maxBytes, max_depth: Int32(clamping: limits.maxDepth),
            max_attributes: Int32(clamping: limits.maxAttributes), max_text_bytes: limits.maxTextBytes,
            max_diagnostics: Int32(clamping: limits.maxDiagnostics),
            max_milliseconds: limits.timeLimit.components.seconds * 1000 + limits.timeLimit.components.attoseconds / 1_000_000_000_000_000)
        context.name = name
        handle = axs_doc_new(name, &cLimits, DocumentContext.selectCallback, DiagnosticSink.callback,
                             Unmanaged.passUnretained(context).toOpaque())
        context.handle = handle
        if codeLists != nil {
            axs_doc_collect_codes(handle, 1)
            context.collectsCodes = true
        }
    }

    deinit { axs_doc_free(handle) }

    /// Feeds the next bytes. Returns `true` when the verdict is already decided (for example a limit was hit or
    /// the document is not well-formed): further bytes would be ignored, so the caller may stop reading.
    @discardableResult
    public func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let handle, report == nil else { return true }
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return false }
        return axs_doc_feed(handle, base.assumingMemoryBound(to: CChar.self), bytes.count) != 0
    }

    /// Feeds the next bytes from an array. See ``feed(_:)-(UnsafeRawBufferPointer)``.
    @discardableResult
    public func feed(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Ends the input and returns the report. Calling it again returns the same report.
    public func finish() -> ValidationReport {
        if let report { return report }
        var result = axs_result()
        if let handle {
            axs_doc_finish(handle, &result)
        } else {
            context.diagnostics.append(Diagnostic(severity: .fatal, code: "input.out-of-memory",
                                                  message: "could not allocate a parser"))
        }
        var diagnostics = context.diagnostics
        if let codeLists, let handle, result.well_formed != 0, result.stopped == 0 {
            var findings = codeLists.check(Self.observations(handle))
            let unchecked = Int(axs_doc_codes_dropped(handle))
            if unchecked > 0 {
                // Never let a partial check pass as a full one.
                findings.append(Diagnostic(severity: .warning, code: "codelist.truncated",
                                           message: "\(unchecked) codes after the first \(axs_doc_code_count(handle)) were not checked against code lists"))
            }
            diagnostics = Self.merge(diagnostics, findings)
        }
        let valid = result.well_formed != 0 && result.schema_applied != 0 && result.schema_valid != 0
            && !diagnostics.contains { $0.severity >= .error }
        if !valid && !diagnostics.contains(where: { $0.severity >= .error }) {
            // Never let an unexplained failure pass as valid, and never leave it unexplained.
            diagnostics.append(Diagnostic(severity: .error, code: "validation.incomplete",
                                          message: "the document could not be validated completely"))
        }
        var captured: [String: String] = [:]
        if let handle {
            for (index, name) in (context.captureSet?.names ?? []).enumerated() {
                if let value = axs_doc_capture(handle, Int32(index)) {
                    captured[name] = String(cString: value).trimmingCharacters(in: .whitespacesAndNewlines)
                }
            }
        }
        let report = ValidationReport(
            document: context.name, verdict: valid ? .valid : .invalid, schema: context.selectedSchema,
            root: context.root, diagnostics: diagnostics, bytes: result.bytes, captured: captured)
        self.report = report
        axs_doc_free(handle)
        handle = nil
        context.handle = nil
        return report
    }
}

extension DocumentValidation {
    static func observations(_ handle: OpaquePointer) -> [CodeObservation] {
        (0..<Int(axs_doc_code_count(handle))).compactMap { index in
            var raw = axs_code_observation()
            return axs_doc_code_at(handle, Int32(index), &raw) != 0 ? CodeObservation(raw) : nil
        }
    }

    /// Both lists are in document order; the result is too (a stable merge by line and column).
    static func merge(_ first: [Diagnostic], _ second: [Diagnostic]) -> [Diagnostic] {
        guard !second.isEmpty else { return first }
        var merged: [Diagnostic] = []
        merged.reserveCapacity(first.count + second.count)
        var i = 0, j = 0
        while i < first.count || j < second.count {
            if j == second.count || (i < first.count && (first[i].line, first[i].column) <= (second[j].line, second[j].column)) {
                merged.append(first[i]); i += 1
            } else {
                merged.append(second[j]); j += 1
            }
        }
        return merged
    }
}

/// What the C layer's callbacks reach: the findings, the schema set and what was selected.
final class DocumentContext: DiagnosticSink {
    let schemas: SchemaSet
    var name = ""
    var root: RootElement?
    var selectedSchema: String?
    var handle: OpaquePointer?
    /// Kept alive while the document uses it.
    var captureSet: CaptureSet?
    /// Code lists are checked: the selected schema's fixed code lists are needed.
    var collectsCodes = false

    init(schemas: SchemaSet) {
        self.schemas = schemas
        super.init()
    }

    /// Names in the finding's message are shown with the document's own prefixes, as bound in the open elements
    /// at the moment of the finding; the expanded names are kept in ``Diagnostic/names``.
    override func append(_ raw: UnsafePointer<axs_diagnostic>) {
        super.append(raw)
        guard let handle, let last = diagnostics.last, last.message.contains("{") else { return }
        let readable = ExpandedNames.readable(last.message) { uri in
            axs_doc_prefix_for(handle, uri).map { String(cString: $0) }
        }
        diagnostics[diagnostics.count - 1].message = readable.message
        diagnostics[diagnostics.count - 1].names = readable.names
    }

    private func useCaptures(_ captures: CaptureSet?) {
        guard let handle, let captures else { return }
        axs_doc_use_captures(handle, captures.handle)
        captureSet = captures
    }

    static let selectCallback: axs_select_fn = { context, rootPointer in
        guard let context, let rootPointer else { return nil }
        let document = Unmanaged<DocumentContext>.fromOpaque(context).takeUnretainedValue()
        let raw = rootPointer.pointee
        let root = RootElement(namespace: raw.namespace_uri.map { String(cString: $0) } ?? "",
                               name: raw.local_name.map { String(cString: $0) } ?? "")
        var attributes: [String: String] = [:]
        for i in 0..<Int(raw.attribute_count) {
            if let name = raw.attribute_names[i], let value = raw.attribute_values[i] {
                attributes[String(cString: name)] = String(cString: value)
            }
        }
        document.root = root
        switch document.schemas.select(root: root, attributes: attributes) {
        case .schema(let entry, let compiled):
            document.selectedSchema = entry.rule.id
            document.useCaptures(entry.captures)
            // Finds, once per schema, the elements whose code list the schema fixes (reading the schema
            // documents again: only for schemas that documents checked against code lists select).
            if document.collectsCodes { axs_schema_prepare_codes(compiled.handle) }
            return compiled.handle
        case .refused(let code, let message):
            let prefix = raw.prefix.map { String(cString: $0) } ?? ""
            let readable = ExpandedNames.readable(message) { $0 == root.namespace ? prefix : nil }
            document.diagnostics.append(Diagnostic(
                severity: .error, code: code, line: raw.line, column: raw.column,
                path: "/" + (prefix.isEmpty ? "" : prefix + ":") + root.name, message: readable.message,
                names: readable.names))
            return nil
        }
    }
}
