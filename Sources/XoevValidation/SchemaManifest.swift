import Foundation

/// Says which XSD validates which documents. Read from a JSON file (`amtsbote-schemas.json`); see
/// `Docs/schema-manifest.md` for the format.
///
/// A document is matched by its root element: namespace, optionally the local name, and optionally a version
/// attribute on the root (XÖV messages carry `version="1.2"`). Paths are relative to `baseDirectory`, which is
/// itself relative to the manifest file. Schema files may only load other files from under `baseDirectory` or
/// through the catalogs.
public struct SchemaManifest: Sendable, Codable, Hashable {
    /// One rule: documents with this root are validated by this XSD.
    public struct Entry: Sendable, Codable, Hashable {
        /// Stable identifier reported with each document, e.g. `wohnsitzanmeldung-1.0`.
        public var id: String
        /// XSD path, relative to the base directory.
        public var xsd: String
        /// Target namespace of the root element; empty for no namespace.
        public var namespace: String
        /// Local names of accepted roots; empty or absent means any root of the namespace.
        public var roots: [String]?
        /// Required value of the version attribute on the root, if any.
        public var version: String?
        /// Name of the (unqualified) version attribute on the root; default `version`.
        public var versionAttribute: String?
        /// Element texts to capture while validating, by name: '/'-separated local names below the root (first
        /// occurrence; namespaces not compared). Default: ``SchemaManifest/defaultCaptures`` (XÖV nachrichtenkopf.g2g).
        /// Routing uses the names `messageId`, `behoerdenkennung`, `behoerdenkennungPraefix`, `ags`, `ars` and
        /// `leistung`.
        public var captures: [String: String]?

        /// Creates an entry.
        public init(id: String, xsd: String, namespace: String, roots: [String]? = nil, version: String? = nil,
                    versionAttribute: String? = nil, captures: [String: String]? = nil) {
            self.id = id
            self.xsd = xsd
            self.namespace = namespace
            self.roots = roots
            self.version = version
            self.versionAttribute = versionAttribute
            self.captures = captures
        }

        /// The captures in effect for this entry, sorted by name.
        public var effectiveCaptures: [(name: String, path: String)] {
            (captures ?? SchemaManifest.defaultCaptures).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }
    }

    /// Format tag; currently `amtsbote-schemas/1`.
    public var format: String?
    /// Directory the other paths are relative to (relative to the manifest's directory); default: the manifest's
    /// directory.
    public var baseDirectory: String?
    /// OASIS XML catalogs that map the absolute schema locations imported by the XSDs to local files.
    public var catalogs: [String]?
    /// The rules, tried in order; an entry naming the root explicitly wins over a namespace-wide one.
    public var schemas: [Entry]

    /// Where XÖV messages keep their message id and recipient: `nachrichtenkopf.g2g` of the Basisnachricht G2G,
    /// whose `leser/kennung` holds the Behördenkennung as `praefix:kennung`.
    public static let defaultCaptures: [String: String] = [
        "messageId": "nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID",
        "behoerdenkennung": "nachrichtenkopf.g2g/leser/kennung",
    ]

    /// Limits of the capture mechanism (see CXMLShim).
    static let maxCaptures = 8
    static let maxCaptureSteps = 16

    /// The file name looked for when a directory is given instead of a manifest file.
    public static let defaultFileName = "amtsbote-schemas.json"

    /// Creates a manifest in code.
    public init(baseDirectory: String? = nil, catalogs: [String]? = nil, schemas: [Entry]) {
        self.format = "amtsbote-schemas/1"
        self.baseDirectory = baseDirectory
        self.catalogs = catalogs
        self.schemas = schemas
    }

    /// Reads a manifest file, or `amtsbote-schemas.json` inside a directory. Returns it with the directory
    /// relative paths resolve against.
    public static func load(from path: String) throws -> (manifest: SchemaManifest, directory: String) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError(code: .manifestInvalid, file: path, message: "no schema manifest at this path")
        }
        let file = isDirectory.boolValue ? (path as NSString).appendingPathComponent(defaultFileName) : path
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw ValidationError(code: .manifestInvalid, file: file,
                                  message: "cannot read the schema manifest: \(error.localizedDescription)")
        }
        let manifest: SchemaManifest
        do {
            manifest = try JSONDecoder().decode(SchemaManifest.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw ValidationError(code: .manifestInvalid, file: file,
                                  message: "missing key '\(key.stringValue)' at \(Self.describe(context.codingPath))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw ValidationError(code: .manifestInvalid, file: file,
                                  message: "wrong type at \(Self.describe(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw ValidationError(code: .manifestInvalid, file: file, message: "not a valid manifest: \(error)")
        }
        if let format = manifest.format, format != "amtsbote-schemas/1" {
            throw ValidationError(code: .manifestInvalid, file: file,
                                  message: "unknown manifest format '\(format)' (expected amtsbote-schemas/1)")
        }
        var seen = Set<String>()
        for entry in manifest.schemas {
            if !seen.insert(entry.id).inserted {
                throw ValidationError(code: .manifestInvalid, file: file, message: "schema id '\(entry.id)' appears twice")
            }
            let captures = entry.effectiveCaptures
            if captures.count > maxCaptures
                || captures.contains(where: { $0.path.split(separator: "/").count > maxCaptureSteps || $0.path.split(separator: "/").isEmpty }) {
                throw ValidationError(
                    code: .manifestInvalid, file: file,
                    message: "schema '\(entry.id)': at most \(maxCaptures) captures of 1 to \(maxCaptureSteps) steps each")
            }
        }
        return (manifest, (file as NSString).deletingLastPathComponent)
    }

    private static func describe(_ path: [any CodingKey]) -> String {
        path.isEmpty ? "the top level" : path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
}
