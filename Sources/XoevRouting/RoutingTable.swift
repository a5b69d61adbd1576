import Foundation

/// The level of an area key in the hierarchy, from most to least specific.
public enum AreaLevel: Int, Sendable, Comparable, CustomStringConvertible, Codable {
    case gemeinde = 0, verband, kreis, regierungsbezirk, land

    public static func < (lhs: AreaLevel, rhs: AreaLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .gemeinde: "Gemeinde"
        case .verband: "Gemeindeverband"
        case .kreis: "Kreis"
        case .regierungsbezirk: "Regierungsbezirk"
        case .land: "Land"
        }
    }
}

/// One rule of a routing table: documents for `service` (nil = any) in `area` go to `postfach`.
public struct RoutingRule: Sendable, Hashable, Codable {
    /// The Leistungsschlüssel, or nil for `*`.
    public let service: String?
    /// The area key as written (2, 3, 5, 8, 9 or 12 digits).
    public let area: String
    /// The level the key names.
    public let level: AreaLevel
    /// Where matching documents go.
    public let postfach: PostfachName
    /// Line in the table file.
    public let line: Int
}

/// A dated routing table: (service or `*`, area key prefix) → Postfach, with hierarchical fallback.
///
/// File format (`amtsbote-routing/1`, tab-separated, see Docs/routing.md):
/// ```
/// # amtsbote-routing/1
/// # valid-from: 2026-04-30
/// service	area	postfach
/// *	05	nrw-landesportal
/// 99115001001000	05315000	koeln-meldewesen
/// ```
public struct RoutingTable: Sendable {
    /// First day the table applies (UTC).
    public let validFrom: Date
    /// The day as written.
    public let validFromText: String
    /// The file the table came from.
    public let file: String
    /// All rules in file order.
    public let rules: [RoutingRule]
    /// Rules by (service or "*", canonical area key).
    private let index: [String: RoutingRule]

    /// Loads and checks a table. Rules naming a municipality are checked against `directory` (and rewritten to its
    /// ARS, so AGS and ARS rules meet); two rules for the same service and area are an error.
    public init(file path: String, directory: MunicipalityDirectory?) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var validFrom: String?
        var sawFormat = false
        var sawHeader = false
        var rules: [RoutingRule] = []
        var index: [String: RoutingRule] = [:]
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = offset + 1
            let content = rawLine.trimmingCharacters(in: .whitespaces.union(.init(charactersIn: "\r")))
            if content.isEmpty { continue }
            if content.hasPrefix("#") {
                let comment = content.dropFirst().trimmingCharacters(in: .whitespaces)
                if comment == "amtsbote-routing/1" { sawFormat = true }
                if comment.hasPrefix("valid-from:") {
                    validFrom = comment.dropFirst("valid-from:".count).trimmingCharacters(in: .whitespaces)
                }
                continue
            }
            let fields = rawLine.split(separator: "\t", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces.union(.init(charactersIn: "\r")))
            }
            if !sawHeader {
                guard fields.count >= 3, fields[0] == "service", fields[1] == "area", fields[2] == "postfach" else {
                    throw RoutingError(code: .tableInvalid, file: path, line: line,
                                       message: "expected the column header 'service<TAB>area<TAB>postfach'")
                }
                sawHeader = true
                continue
            }
            guard fields.count >= 3 else {
                throw RoutingError(code: .tableInvalid, file: path, line: line, message: "expected service, area and postfach separated by tabs")
            }
            let service: String?
            if fields[0] == "*" {
                service = nil
            } else if let key = Leistungsschluessel(fields[0]) {
                service = key.digits
            } else {
                throw RoutingError(code: .tableInvalid, file: path, line: line, message: "service must be * or a 14-digit Leistungsschlüssel starting with 99")
            }
            guard let postfach = PostfachName(fields[2]) else {
                throw RoutingError(code: .tableInvalid, file: path, line: line,
                                   message: "postfach names use a-z, 0-9, '.', '_', '-' (at most 64)")
            }
            let (canonical, level) = try Self.canonicalArea(fields[1], directory: directory, file: path, line: line)
            let rule = RoutingRule(service: service, area: fields[1], level: level, postfach: postfach, line: line)
            let key = (service ?? "*") + "|" + canonical
            if let earlier = index[key] {
                throw RoutingError(code: .tableAmbiguous, file: path, line: line,
                                   message: "rule repeats line \(earlier.line) for service \(service ?? "*") and area \(fields[1]) (Postfach \(earlier.postfach) vs \(postfach))")
            }
            index[key] = rule
            rules.append(rule)
        }
        guard sawFormat else {
            throw RoutingError(code: .tableInvalid, file: path, line: 1, message: "missing '# amtsbote-routing/1'")
        }
        guard let validFrom, let date = Self.day(validFrom) else {
            throw RoutingError(code: .tableInvalid, file: path, line: 1, message: "missing or malformed '# valid-from: YYYY-MM-DD'")
        }
        self.validFrom = date
        self.validFromText = validFrom
        self.file = path
        self.rules = rules
        self.index = index
    }

    static func day(_ text: String) -> Date? {
        let parts = text.split(separator: "-")
        guard parts.count == 3, isDigits(String(parts[0]), count: 4), isDigits(String(parts[1]), count: 2),
              isDigits(String(parts[2]), count: 2), let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let components = DateComponents(year: y, month: m, day: d)
        guard let date = calendar.date(from: components),
              calendar.dateComponents([.year, .month, .day], from: date) == components else { return nil }
        return date
    }

    /// Canonical form of a rule's area: municipalities become their ARS where the directory knows it.
    private static func canonicalArea(_ text: String, directory: MunicipalityDirectory?, file: String,
                                      line: Int) throws -> (String, AreaLevel) {
        switch text.utf8.count {
        case 2 where isDigits(text, count: 2): return (text, .land)
        case 3 where isDigits(text, count: 3): return (text, .regierungsbezirk)
        case 5 where isDigits(text, count: 5): return (text, .kreis)
        case 9 where isDigits(text, count: 9): return (text, .verband)
        case 8:
            guard let ags = AGS(text) else { break }
            if let directory {
                guard let municipality = directory.municipality(ags) else {
                    throw RoutingError(code: .tableInvalid, file: file, line: line,
                                       message: "AGS \(text) is not a current municipality in \(directory.source)")
                }
                if let ars = municipality.ars { return (ars.digits, .gemeinde) }
            }
            return ("ags:" + ags.digits, .gemeinde)
        case 12:
            guard let ars = ARS(text) else { break }
            if let directory, directory.municipality(ars) == nil {
                throw RoutingError(code: .tableInvalid, file: file, line: line,
                                   message: "ARS \(text) is not a current municipality in \(directory.source)")
            }
            return (ars.digits, .gemeinde)
        default: break
        }
        throw RoutingError(code: .tableInvalid, file: file, line: line,
                           message: "area must be 2, 3, 5, 8, 9 or 12 digits (Land, RB, Kreis, AGS, Verband, ARS)")
    }

    /// One step of the search, for explanations.
    public struct Step: Sendable, Hashable, Codable {
        public let level: AreaLevel
        public let area: String
        public let service: String?
        public let rule: RoutingRule?
    }

    /// Finds the most specific rule: levels from Gemeinde to Land; at each level a rule for the service beats `*`.
    /// Returns the rule (if any) and every step tried.
    func lookup(area: [(AreaLevel, String)], service: String?) -> (RoutingRule?, [Step]) {
        var steps: [Step] = []
        let services: [String?] = service == nil ? [nil] : [service, nil]
        for (level, key) in area {
            for candidate in services {
                let rule = index[(candidate ?? "*") + "|" + key]
                steps.append(Step(level: level, area: key, service: candidate, rule: rule))
                if let rule { return (rule, steps) }
            }
        }
        return (nil, steps)
    }
}
