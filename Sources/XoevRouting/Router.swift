import Foundation

/// Why a document could not be routed. Stable codes; the message is for people.
public struct Unroutable: Sendable, Hashable, Codable, Error {
    /// `route.key-missing`, `route.key-invalid`, `route.key-unknown`, `route.key-retired`,
    /// `route.prefix-unknown`, `route.no-table` or `route.no-rule`.
    public let code: String
    public let message: String
}

/// Where a document goes and why.
public struct RoutingDecision: Sendable, Hashable, Codable {
    /// The Postfach.
    public let postfach: PostfachName
    /// The rule that matched.
    public let rule: RoutingRule
    /// Table file and its valid-from day.
    public let table: String
    public let tableValidFrom: String
    /// The area key used (AGS or ARS) and the service, as checked keys.
    public let area: String
    public let service: String?
    /// Every (level, area, service) tried, most specific first, ending with the match.
    public let steps: [RoutingTable.Step]

    /// A few lines for `amtsbote route --explain`.
    public var explanation: String {
        var lines = ["area \(area)" + (service.map { ", service \($0)" } ?? ", no service key")
                     + "; table \(table) (valid from \(tableValidFrom))"]
        for step in steps {
            let what = "\(step.level) \(step.area.replacingOccurrences(of: "ags:", with: "")) for \(step.service ?? "*")"
            if let rule = step.rule {
                lines.append("  \(what): rule at line \(rule.line) -> \(rule.postfach)")
            } else {
                lines.append("  \(what): no rule")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// The keys a document offers for routing, as captured while validating (unchecked text).
public struct RoutingKeys: Sendable, Hashable {
    public var ags: String?
    public var ars: String?
    public var leistung: String?
    public var behoerdenkennung: String?
    public var behoerdenkennungPraefix: String?

    public init(ags: String? = nil, ars: String? = nil, leistung: String? = nil, behoerdenkennung: String? = nil,
                behoerdenkennungPraefix: String? = nil) {
        self.ags = ags
        self.ars = ars
        self.leistung = leistung
        self.behoerdenkennung = behoerdenkennung
        self.behoerdenkennungPraefix = behoerdenkennungPraefix
    }

    /// Takes the capture names of the schema manifest: `ags`, `ars`, `leistung`, `behoerdenkennung`,
    /// `behoerdenkennungPraefix`.
    public init(captured: [String: String]) {
        self.init(ags: captured["ags"], ars: captured["ars"], leistung: captured["leistung"],
                  behoerdenkennung: captured["behoerdenkennung"], behoerdenkennungPraefix: captured["behoerdenkennungPraefix"])
    }
}

/// Decides the Postfach for a document from its keys, dated routing tables and the municipality list.
public struct Router: Sendable {
    /// Tables, oldest first.
    public let tables: [RoutingTable]
    public let directory: MunicipalityDirectory?
    /// Known DVDV prefixes; nil = not checked.
    public let dvdvPrefixes: Set<String>?

    /// Combines tables; two tables valid from the same day are ambiguous.
    public init(tables: [RoutingTable], directory: MunicipalityDirectory?, dvdvPrefixes: Set<String>? = nil) throws {
        let sorted = tables.sorted { $0.validFrom < $1.validFrom }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.validFrom == b.validFrom {
            throw RoutingError(code: .tableAmbiguous, file: b.file, line: 1,
                               message: "valid from the same day as \(a.file)")
        }
        self.tables = sorted
        self.directory = directory
        self.dvdvPrefixes = dvdvPrefixes.map { Set($0.map { $0.lowercased() }) }
    }

    /// Routes a document received at `date`.
    public func route(_ keys: RoutingKeys, at date: Date) -> Result<RoutingDecision, Unroutable> {
        func fail(_ code: String, _ message: String) -> Result<RoutingDecision, Unroutable> {
            .failure(Unroutable(code: code, message: message))
        }
        // The Behördenkennung: checked even when an explicit area key routes, so a bad header is never ignored.
        var kennung: Behoerdenkennung?
        if let text = keys.behoerdenkennung {
            if let praefix = keys.behoerdenkennungPraefix {
                kennung = Behoerdenkennung(praefix: praefix, kennung: text)
            } else {
                kennung = Behoerdenkennung(text)
            }
            guard kennung != nil else {
                return fail("route.key-invalid", "the recipient's Behördenkennung is not praefix:kennung of ASCII letters and digits")
            }
        }
        if let kennung, let known = dvdvPrefixes, !known.contains(kennung.praefix) {
            return fail("route.prefix-unknown", "the DVDV prefix '\(kennung.praefix)' of the recipient is not in the configured prefix list")
        }

        var ars: ARS?
        var ags: AGS?
        if let text = keys.ars {
            guard let key = ARS(text) else { return fail("route.key-invalid", "the ARS element does not hold exactly 12 digits") }
            ars = key
            ags = key.ags
        } else if let text = keys.ags {
            guard let key = AGS(text) else { return fail("route.key-invalid", "the AGS element does not hold exactly 8 digits") }
            ags = key
        } else if let kennung, let key = AGS(kennung.kennung) {
            ags = key
        } else if let kennung, let key = ARS(kennung.kennung) {
            ars = key
            ags = key.ags
        }
        guard let ags else {
            return fail("route.key-missing", "the document carries no AGS or ARS (nor a Behördenkennung whose kennung is one)")
        }
        if let directory {
            guard let municipality = directory.municipality(ags), ars == nil || municipality.ars == nil || municipality.ars == ars else {
                if directory.isRetired(ags) {
                    return fail("route.key-retired", "AGS \(ags) no longer exists (retired by a municipal reform; \(directory.source))")
                }
                return fail("route.key-unknown", "\(ars.map { "ARS \($0)" } ?? "AGS \(ags)") is not a current municipality in \(directory.source)")
            }
            ars = ars ?? municipality.ars
        }
        var service: String?
        if let text = keys.leistung {
            guard let key = Leistungsschluessel(text) else {
                return fail("route.key-invalid", "the Leistungsschlüssel does not hold 14 digits starting with 99")
            }
            service = key.digits
        }
        guard let table = tables.last(where: { $0.validFrom <= date }) else {
            return fail("route.no-table", "no routing table is valid on that day")
        }
        var chain: [(AreaLevel, String)] = []
        if let ars {
            chain.append((.gemeinde, ars.digits))
        }
        // With a municipality list, AGS rules were rewritten to the ARS at load time; without one they stay AGS.
        if ars == nil || directory == nil {
            chain.append((.gemeinde, "ags:" + ags.digits))
        }
        if let ars, !ars.digits.dropFirst(5).prefix(4).allSatisfy({ $0 == "0" }) {
            chain.append((.verband, ars.verband))
        }
        chain += [(.kreis, String(ags.digits.prefix(5))), (.regierungsbezirk, String(ags.digits.prefix(3))),
                  (.land, String(ags.digits.prefix(2)))]
        let (rule, steps) = table.lookup(area: chain, service: service)
        guard let rule else {
            return fail("route.no-rule", "no rule of \(table.file) covers \(ars.map(\.digits) ?? ags.digits)" + (service.map { " for service \($0)" } ?? ""))
        }
        return .success(RoutingDecision(
            postfach: rule.postfach, rule: rule, table: (table.file as NSString).lastPathComponent,
            tableValidFrom: table.validFromText, area: ars?.digits ?? ags.digits, service: service, steps: steps))
    }
}
