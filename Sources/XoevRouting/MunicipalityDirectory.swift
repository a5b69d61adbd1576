import Foundation

/// The list of current German municipalities (AGS ↔ ARS) and, optionally, keys retired since an older list.
///
/// Read from the Destatis-derived CSV `ags,ars,name,…` (see Samples/routing/README.md) and a text file of retired
/// AGS, one per line.
public struct MunicipalityDirectory: Sendable {
    /// One municipality.
    public struct Municipality: Sendable, Hashable {
        public let ags: AGS
        /// Nil where the list gives none (for example AGS 16061119).
        public let ars: ARS?
        public let name: String
    }

    private let byAGS: [AGS: Municipality]
    private let byARS: [ARS: Municipality]
    private let retired: Set<AGS>
    /// Dated name of the list, for explanations.
    public let source: String

    /// Number of current municipalities.
    public var count: Int { byAGS.count }

    /// Loads the CSV (header required: `ags`, `ars`, `name` columns) and optionally a retired-keys file.
    public init(csv path: String, retiredKeys retiredPath: String? = nil) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let rows = CSV.parse(text)
        guard let header = rows.first, let agsColumn = header.firstIndex(of: "ags"),
              let arsColumn = header.firstIndex(of: "ars"), let nameColumn = header.firstIndex(of: "name") else {
            throw RoutingError(code: .directoryInvalid, file: path, line: 1, message: "expected a header with ags, ars and name")
        }
        var byAGS: [AGS: Municipality] = [:]
        var byARS: [ARS: Municipality] = [:]
        for (index, row) in rows.enumerated().dropFirst() where !(row.count == 1 && row[0].isEmpty) {
            guard row.count > max(agsColumn, arsColumn, nameColumn), let ags = AGS(row[agsColumn]) else {
                throw RoutingError(code: .directoryInvalid, file: path, line: index + 1, message: "not a valid row")
            }
            let ars = ARS(row[arsColumn])
            if !row[arsColumn].isEmpty, ars == nil || ars?.ags != ags {
                throw RoutingError(code: .directoryInvalid, file: path, line: index + 1, message: "ARS does not match the AGS")
            }
            let municipality = Municipality(ags: ags, ars: ars, name: row[nameColumn])
            byAGS[ags] = municipality
            if let ars { byARS[ars] = municipality }
        }
        var retired = Set<AGS>()
        if let retiredPath {
            let lines = try String(contentsOfFile: retiredPath, encoding: .utf8).split(separator: "\n")
            for (index, line) in lines.enumerated() {
                let text = line.trimmingCharacters(in: .whitespaces)
                if text.isEmpty || text.hasPrefix("#") { continue }
                guard let ags = AGS(text) else {
                    throw RoutingError(code: .directoryInvalid, file: retiredPath, line: index + 1, message: "not an AGS")
                }
                if byAGS[ags] == nil { retired.insert(ags) }
            }
        }
        self.byAGS = byAGS
        self.byARS = byARS
        self.retired = retired
        self.source = (path as NSString).lastPathComponent
    }

    /// The current municipality with this AGS.
    public func municipality(_ ags: AGS) -> Municipality? { byAGS[ags] }
    /// The current municipality with this ARS.
    public func municipality(_ ars: ARS) -> Municipality? { byARS[ars] }
    /// `true` when the AGS existed in the older list but no longer does.
    public func isRetired(_ ags: AGS) -> Bool { retired.contains(ags) }
}

/// Just enough CSV (RFC 4180: quoted fields, doubled quotes, commas and newlines inside quotes).
enum CSV {
    static func parse(_ text: String) -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var quoted = false
        var iterator = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        while let scalar = pending ?? iterator.next() {
            pending = nil
            if quoted {
                if scalar == "\"" {
                    if let next = iterator.next() {
                        if next == "\"" { field.unicodeScalars.append("\"") } else { quoted = false; pending = next }
                    } else { quoted = false }
                } else {
                    field.unicodeScalars.append(scalar)
                }
                continue
            }
            switch scalar {
            case "\"": quoted = true
            case ",": row.append(field); field = ""
            case "\n": row.append(field); rows.append(row); row = []; field = ""
            case "\r": continue
            default: field.unicodeScalars.append(scalar)
            }
        }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
