import CXMLShim
import Foundation

/// One version of an OASIS genericode code list: the values of its key column.
public struct CodeList: Sendable, Hashable {
    /// `Identification/CanonicalUri`: what a document's `listURI` names.
    public var canonicalUri: String
    /// `Identification/Version`: what a document's `listVersionID` names.
    public var version: String
    /// `Identification/CanonicalVersionUri`, when given.
    public var canonicalVersionUri: String?
    /// `Identification/ShortName`, when given.
    public var shortName: String?
    /// The key column the codes come from (`ColumnSet/Key/ColumnRef`).
    public var keyColumn: String?
    /// The codes.
    public var values: Set<String>
    /// The file the list was read from.
    public var file: String

    /// Creates a list (for lists built in code; files are read by ``CodeListCatalog``).
    public init(canonicalUri: String, version: String, values: Set<String>, canonicalVersionUri: String? = nil,
                shortName: String? = nil, keyColumn: String? = nil, file: String = "") {
        self.canonicalUri = canonicalUri
        self.version = version
        self.values = values
        self.canonicalVersionUri = canonicalVersionUri
        self.shortName = shortName
        self.keyColumn = keyColumn
        self.file = file
    }
}

/// Code lists indexed by canonical URI and version, checked against XÖV code elements while validating.
///
/// A document's code element (a `code` child with `listURI` and `listVersionID`, written in the document or fixed
/// by the schema) is looked up by list and version: several versions of a list can be loaded side by side, and a
/// document naming an older version is checked against that version.
public struct CodeListCatalog: Sendable {
    /// How to treat a code whose list (or list version) is not loaded.
    public enum MissingListPolicy: String, Sendable, CaseIterable {
        /// Say nothing.
        case ignore
        /// A warning, once per list and document (the default).
        case warning
        /// An error: the document is invalid.
        case error
    }

    /// The canonical URI of the DVDV prefix list, used for the Behördenkennung of `leser` and `autor`.
    public static let dvdvPrefixList = "urn:xoev-de:bund:bmi:bit:codeliste:dvdv.praefix"

    /// Lists by canonical URI, then version.
    public private(set) var lists: [String: [String: CodeList]] = [:]
    /// What loading found: unreadable files, lists without URI or version, the same list version twice.
    public private(set) var loadDiagnostics: [Diagnostic] = []
    /// How codes of lists that are not loaded are reported.
    public var missingLists: MissingListPolicy = .warning

    /// An empty catalog.
    public init() {}

    /// Reads every genericode file (`*.xml`) in `directories`, recursively. XML files that are not genericode
    /// are skipped; broken ones are reported in ``loadDiagnostics``.
    ///
    /// - Throws: ``ValidationError`` (`config.code-lists-unreadable`) when a directory cannot be read.
    public init(directories: [String]) throws {
        for directory in directories {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue,
                  let walker = FileManager.default.enumerator(atPath: directory) else {
                throw ValidationError(code: .codeListsUnreadable, file: directory, message: "not a readable folder of code lists")
            }
            let files = walker.compactMap { $0 as? String }.filter { $0.lowercased().hasSuffix(".xml") }.sorted()
            for file in files { load(file: (directory as NSString).appendingPathComponent(file)) }
        }
    }

    /// Adds one list (replacing a list of the same URI and version).
    public mutating func add(_ list: CodeList) {
        lists[list.canonicalUri, default: [:]][list.version] = list
    }

    /// Reads one genericode file.
    public mutating func load(file path: String) {
        guard let raw = axs_genericode_load(path) else { return }
        defer { axs_genericode_free(raw) }
        let list = raw.pointee
        let problem = withUnsafeBytes(of: list.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if list.not_genericode != 0 { return }
        guard problem.isEmpty, let uri = list.canonical_uri, let version = list.version else {
            loadDiagnostics.append(Diagnostic(severity: .warning, code: "codelist.unreadable",
                                              message: "the code list cannot be used: \(problem)", file: path))
            return
        }
        var values = Set<String>()
        for index in 0..<Int(list.value_count) {
            if let value = list.values[index] { values.insert(String(cString: value)) }
        }
        let loaded = CodeList(canonicalUri: String(cString: uri), version: String(cString: version), values: values,
                              canonicalVersionUri: list.canonical_version_uri.map { String(cString: $0) },
                              shortName: list.short_name.map { String(cString: $0) },
                              keyColumn: list.key_column.map { String(cString: $0) }, file: path)
        if let existing = lists[loaded.canonicalUri]?[loaded.version], existing.values != loaded.values {
            loadDiagnostics.append(Diagnostic(
                severity: .warning, code: "codelist.duplicate",
                message: "\(loaded.canonicalUri) version \(loaded.version) is also in \(existing.file) with other codes; this file wins",
                file: path))
        }
        add(loaded)
    }

    /// The loaded versions of a list, sorted.
    public func versions(of uri: String) -> [String] {
        (lists[uri]?.keys).map { $0.sorted { $0.compare($1, options: .numeric) == .orderedAscending } } ?? []
    }

    /// Number of list versions loaded.
    public var count: Int { lists.values.reduce(0) { $0 + $1.count } }

    /// Checks what a document said about its codes; returns the findings in document order.
    func check(_ observations: [CodeObservation]) -> [Diagnostic] {
        var findings: [Diagnostic] = []
        var missingReported: Set<String> = []
        let missingSeverity: Severity? = switch missingLists {
        case .ignore: nil
        case .warning: .warning
        case .error: .error
        }
        for seen in observations {
            switch seen.kind {
            case .code(let uri, let version):
                guard let versions = lists[uri] else {
                    if let missingSeverity, missingReported.insert(uri).inserted {
                        findings.append(seen.finding(missingSeverity, "codelist.unknown-list",
                            "the code list \(uri) is not loaded, so its codes are not checked"))
                    }
                    continue
                }
                let candidates: [CodeList]
                if let version {
                    guard let list = versions[version] else {
                        if let missingSeverity, missingReported.insert(uri + "\u{0}" + version).inserted {
                            findings.append(seen.finding(missingSeverity, "codelist.unknown-version",
                                "the code list \(uri) is not loaded in version \(version); loaded: \(self.versions(of: uri).joined(separator: ", "))"))
                        }
                        continue
                    }
                    candidates = [list]
                } else {
                    candidates = Array(versions.values)
                }
                if seen.valueTooLong || !candidates.contains(where: { $0.values.contains(seen.value) }) {
                    let named = version.map { "version \($0)" } ?? "any loaded version"
                    findings.append(seen.finding(.error, "codelist.value-unknown",
                        "the code '\(seen.value.prefix(64))' is not in the code list \(uri) (\(named))"))
                }
            case .behoerdenkennung:
                guard let prefixes = lists[Self.dvdvPrefixList], let colon = seen.value.firstIndex(of: ":") else { continue }
                let prefix = seen.value[..<colon].lowercased()
                if !prefixes.values.contains(where: { $0.values.contains(prefix) }) {
                    let loaded = self.versions(of: Self.dvdvPrefixList).joined(separator: ", ")
                    findings.append(seen.finding(.warning, "codelist.dvdv-prefix-unknown",
                        "the Behördenkennung prefix '\(prefix)' is not in the DVDV prefix list (version \(loaded))"))
                }
            }
        }
        return findings
    }
}

/// A code or Behördenkennung the C layer saw in a document.
struct CodeObservation {
    enum Kind {
        case code(uri: String, version: String?)
        case behoerdenkennung
    }

    let kind: Kind
    let value: String
    let valueTooLong: Bool
    let line: Int
    let column: Int
    let path: String

    init(_ raw: axs_code_observation) {
        kind = raw.kind == Int32(AXS_CODE_BEHOERDENKENNUNG)
            ? .behoerdenkennung
            : .code(uri: raw.list_uri.map { String(cString: $0) } ?? "", version: raw.list_version.map { String(cString: $0) })
        value = raw.value.map { String(cString: $0) } ?? ""
        valueTooLong = raw.value_too_long != 0
        line = raw.line
        column = raw.column
        path = raw.path.map { String(cString: $0) } ?? ""
    }

    func finding(_ severity: Severity, _ code: String, _ message: String) -> Diagnostic {
        Diagnostic(severity: severity, code: code, line: line, column: column, path: path, message: message)
    }
}
