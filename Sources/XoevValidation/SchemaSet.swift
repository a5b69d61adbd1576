import CXMLShim
import Foundation

/// A set of compiled schemas and the rules that pick one per document. Compile once, share everywhere: a schema
/// set is safe to use from many threads at once.
public final class SchemaSet: Sendable {
    /// When the schemas of a set are compiled.
    public enum Compilation: Sendable {
        /// Every schema while the set loads: a service reports its readiness only after all compiled, and a set
        /// where none compiles is refused at once (``ValidationError`` with code `config.no-usable-schema`).
        case atStart
        /// Each schema when the first document selects it, once, under a lock (a document waits for it): a
        /// command that validates one file compiles one schema. Compile errors appear in ``loadDiagnostics``
        /// from then on, and the documents that selected a broken schema are refused with `schema.unavailable`.
        case onFirstUse
    }

    /// One manifest entry after loading: where its XSD is and whether it compiled.
    public struct Entry: Sendable {
        /// The rule as written in the manifest.
        public let rule: SchemaManifest.Entry
        /// Absolute path of the XSD.
        public let xsdPath: String
        /// `false` when the XSD could not be compiled; see ``SchemaSet/loadDiagnostics``. In a set compiled
        /// ``Compilation/onFirstUse`` asking compiles the schema.
        public var isUsable: Bool { compiled != nil }
        var compiled: CompiledSchema? { schema.compiled() }
        let schema: SchemaCompilation
        let captures: CaptureSet?
    }

    /// The entries in manifest order.
    public let entries: [Entry]
    /// Namespaces the set knows, sorted, for "no schema" messages.
    public let knownNamespaces: [String]
    /// The compilations, one per XSD file, in manifest order.
    private let compilations: [SchemaCompilation]

    /// What loading found: compile errors with schema file and line, unresolvable locations, skipped imports
    /// (for a set compiled ``Compilation/onFirstUse``: of the schemas compiled so far).
    public var loadDiagnostics: [Diagnostic] { compilations.flatMap { $0.diagnostics() } }

    /// Loads the manifest at `path` (a JSON file, or a directory holding `amtsbote-schemas.json`) and compiles
    /// every XSD it names once, at start or on first use.
    ///
    /// - Throws: ``ValidationError`` when the manifest or a catalog cannot be read, or no schema compiles.
    public convenience init(manifestAt path: String, compilation: Compilation = .atStart) throws {
        let (manifest, directory) = try SchemaManifest.load(from: path)
        try self.init(manifest: manifest, relativeTo: directory, compilation: compilation)
    }

    /// Compiles the schemas of a manifest whose relative paths resolve against `directory`.
    ///
    /// - Throws: ``ValidationError`` when a catalog cannot be read or (compiling at start) no schema compiles.
    public init(manifest: SchemaManifest, relativeTo directory: String, compilation: Compilation = .atStart) throws {
        axs_global_init()
        let base = Self.absolute(manifest.baseDirectory ?? ".", relativeTo: directory)
        let allowedRoot = Self.realPath(base) ?? base

        var catalogs: [LoadedCatalog] = []
        for path in manifest.catalogs ?? [] {
            let absolute = Self.absolute(path, relativeTo: base)
            guard FileManager.default.isReadableFile(atPath: absolute), let handle = axs_catalog_load(absolute) else {
                throw ValidationError(code: .catalogUnreadable, file: absolute, message: "cannot load the XML catalog")
            }
            catalogs.append(LoadedCatalog(handle: handle))
        }

        var byPath: [String: SchemaCompilation] = [:]
        var compilations: [SchemaCompilation] = []
        var entries: [Entry] = []
        for rule in manifest.schemas {
            let xsdPath = Self.absolute(rule.xsd, relativeTo: base)
            let schema = byPath[xsdPath] ?? {
                let new = SchemaCompilation(path: xsdPath, catalogs: catalogs, allowedRoot: allowedRoot)
                byPath[xsdPath] = new
                compilations.append(new)
                return new
            }()
            entries.append(Entry(rule: rule, xsdPath: xsdPath, schema: schema, captures: CaptureSet(rule.effectiveCaptures)))
        }

        self.entries = entries
        self.compilations = compilations
        self.knownNamespaces = Array(Set(manifest.schemas.map(\.namespace))).sorted()
        guard compilation == .atStart else { return }
        let usable = compilations.map { $0.compiled() != nil }   // every one, not only up to the first usable
        if !usable.isEmpty && !usable.contains(true) {
            let diagnostics = loadDiagnostics
            let first = diagnostics.first(where: { $0.severity >= .error })
            throw ValidationError(
                code: .noUsableSchema, file: first?.file ?? directory,
                message: "no schema of the set could be compiled" + (first.map { ": line \($0.line): \($0.message)" } ?? ""),
                findings: diagnostics)
        }
    }

    /// A set of one XSD that validates every document (like `xmllint --schema`), compiled at once. Files it loads
    /// must lie under `allowedRoot` (default: the XSD's directory) or be mapped by `catalogs`.
    public convenience init(xsd: String, catalogs: [String] = [], allowedRoot: String? = nil) throws {
        let cwd = FileManager.default.currentDirectoryPath
        let xsdPath = Self.absolute(xsd, relativeTo: cwd)
        let root = allowedRoot.map { Self.absolute($0, relativeTo: cwd) } ?? (xsdPath as NSString).deletingLastPathComponent
        let manifest = SchemaManifest(
            baseDirectory: root,
            catalogs: catalogs.map { Self.absolute($0, relativeTo: cwd) },
            schemas: [.init(id: (xsdPath as NSString).lastPathComponent, xsd: xsdPath, namespace: "*")])
        try self.init(manifest: manifest, relativeTo: cwd)
    }

    static func absolute(_ path: String, relativeTo directory: String) -> String {
        let joined = path.hasPrefix("/") ? path : (directory as NSString).appendingPathComponent(path)
        return (joined as NSString).standardizingPath
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    // MARK: - Selection

    /// What the schema set decided for a root element.
    enum Selection {
        case schema(Entry, CompiledSchema)
        case refused(code: String, message: String)
    }

    func select(root: RootElement, attributes: [String: String]) -> Selection {
        let candidates = entries.filter { entry in
            (entry.rule.namespace == "*" || entry.rule.namespace == root.namespace)
                && (entry.rule.roots?.isEmpty ?? true || entry.rule.roots?.contains(root.name) == true)
        }
        // An entry that names the root explicitly beats a namespace-wide one.
        let ordered = candidates.filter { !($0.rule.roots?.isEmpty ?? true) } + candidates.filter { $0.rule.roots?.isEmpty ?? true }
        guard !ordered.isEmpty else {
            let known = knownNamespaces.isEmpty ? "none" : knownNamespaces.joined(separator: ", ")
            return .refused(code: "schema.unknown-document",
                            message: "no schema for \(root) (namespace \(root.namespace.isEmpty ? "none" : root.namespace)) in this schema set; known namespaces: \(known)")
        }
        var versionsSeen: [String] = []
        var documentVersion: String?
        for entry in ordered {
            if let required = entry.rule.version {
                let attribute = entry.rule.versionAttribute ?? "version"
                let declared = attributes[attribute]
                documentVersion = declared.map { "\(attribute)=\"\($0)\"" } ?? "no \(attribute) attribute"
                guard declared == required else {
                    versionsSeen.append(required)
                    continue
                }
            }
            guard let compiled = entry.compiled else {
                let cause = entry.schema.diagnostics().first { $0.severity >= .error }
                    .map { ": line \($0.line): \($0.message)" } ?? "; see the load errors"
                return .refused(code: "schema.unavailable",
                                message: "the schema '\(entry.rule.id)' for \(root) did not compile (\(entry.xsdPath))\(cause)")
            }
            return .schema(entry, compiled)
        }
        return .refused(code: "schema.version-mismatch",
                        message: "\(root) declares \(documentVersion ?? "no version"), but the schema set has version \(versionsSeen.joined(separator: ", ")) for it")
    }
}

/// One XSD file of a set and its compilation, done once: at start, or by the first document that needs it.
final class SchemaCompilation: @unchecked Sendable {
    // Safety: every mutable member is read and written under `lock`; the compiled schema is immutable.
    let path: String
    private let lock = NSLock()
    private var catalogs: [LoadedCatalog]
    private let allowedRoot: String
    private var done = false
    private var result: CompiledSchema?
    private var found: [Diagnostic] = []

    init(path: String, catalogs: [LoadedCatalog], allowedRoot: String) {
        self.path = path
        self.catalogs = catalogs
        self.allowedRoot = allowedRoot
    }

    /// The compiled schema, compiling it on the first call; `nil` when it does not compile.
    func compiled() -> CompiledSchema? {
        lock.lock()
        defer { lock.unlock() }
        if !done {
            let sink = DiagnosticSink()
            result = Self.compile(path, catalogs: catalogs, allowedRoot: allowedRoot, sink: sink)
            found = sink.diagnostics
            catalogs = []   // only needed while compiling
            done = true
        }
        return result
    }

    /// What compiling found; empty before the compilation.
    func diagnostics() -> [Diagnostic] {
        lock.lock()
        defer { lock.unlock() }
        return found
    }

    private static func compile(_ path: String, catalogs: [LoadedCatalog], allowedRoot: String,
                                sink: DiagnosticSink) -> CompiledSchema? {
        guard FileManager.default.isReadableFile(atPath: path) else {
            sink.diagnostics.append(Diagnostic(severity: .error, code: "schema.missing",
                                               message: "the schema file cannot be read", file: path))
            return nil
        }
        let catalogHandles: [OpaquePointer?] = catalogs.map { $0.handle }
        let handle: OpaquePointer? = catalogHandles.withUnsafeBufferPointer { catalogBuffer in
            allowedRoot.withCString { rootPointer in
                var roots: [UnsafePointer<CChar>?] = [rootPointer]
                return roots.withUnsafeMutableBufferPointer { rootBuffer in
                    axs_schema_compile(path, catalogBuffer.baseAddress, Int32(catalogBuffer.count),
                                       rootBuffer.baseAddress, Int32(rootBuffer.count),
                                       DiagnosticSink.callback, Unmanaged.passUnretained(sink).toOpaque())
                }
            }
        }
        return handle.map(CompiledSchema.init(handle:))
    }
}
