import AmtsboteTestSupport
import Foundation
import Testing
@testable import XoevRouting

enum RoutingFixtures {
    static let folder = TestEnvironment.projectRoot.appendingPathComponent("Samples/routing")
    static let directory: MunicipalityDirectory = {
        do {
            return try MunicipalityDirectory(
                csv: folder.appendingPathComponent("gemeinden_ags_ars_2026-04-30.csv").path,
                retiredKeys: folder.appendingPathComponent("ags-retired-since-2011.txt").path)
        } catch { fatalError("sample municipality list must load: \(error)") }
    }()
    static let router: Router = {
        do {
            let table = try RoutingTable(file: folder.appendingPathComponent("routing-2026-04-30.tsv").path, directory: directory)
            return try Router(tables: [table], directory: directory)
        } catch { fatalError("sample routing table must load: \(error)") }
    }()
    static let day = RoutingTable.day("2026-11-23")!
    static let meldewesen = "99115001001000"
    static let baugenehmigung = "99013001000000"

    static func table(_ body: String, validFrom: String = "2026-01-01") throws -> RoutingTable {
        let url = try TestEnvironment.temporaryDirectory().appendingPathComponent("t.tsv")
        try "# amtsbote-routing/1\n# valid-from: \(validFrom)\nservice\tarea\tpostfach\n\(body)".write(to: url, atomically: true, encoding: .utf8)
        return try RoutingTable(file: url.path, directory: directory)
    }
}

@Suite("Routing keys are checked strictly")
struct RoutingKeyTests {
    @Test("AGS, ARS, Leistungsschlüssel and Behördenkennung accept only their exact forms")
    func strictKeys() {
        #expect(AGS("05315000") != nil)
        for bad in ["0531500", "053150000", "05315ooo", "０５３１５０００", " 05315000", "05315000\n", "٠٥٣١٥٠٠٠", ""] {
            #expect(AGS(bad) == nil, "\(bad)")
        }
        #expect(ARS("064350014014")?.ags == AGS("06435014"))
        #expect(Leistungsschluessel("99115001001000") != nil)
        #expect(Leistungsschluessel("98115001001000") == nil)
        #expect(Behoerdenkennung("psw:01003110")?.praefix == "psw")
        for bad in ["psw01003110", "psw:", ":0100", "p:0100", "psw:../../x", "psw:0100:1", "psw:01 00"] {
            #expect(Behoerdenkennung(bad) == nil, "\(bad)")
        }
        #expect(PostfachName("gemeinde-05315000-koeln") != nil)
        for bad in ["", "-x", "../x", "a/b", "Köln", "A", String(repeating: "a", count: 65)] {
            #expect(PostfachName(bad) == nil, "\(bad)")
        }
    }
}

@Suite("Routing with hierarchical fallback")
struct RouterTests {
    func route(_ keys: RoutingKeys) -> Result<RoutingDecision, Unroutable> {
        RoutingFixtures.router.route(keys, at: RoutingFixtures.day)
    }

    @Test("the full municipality list loads, with the retired 2011 keys")
    func directoryLoads() {
        #expect(RoutingFixtures.directory.count == 11_227)
        #expect(RoutingFixtures.directory.municipality(AGS("05315000")!)?.ars == ARS("053150000000"))
        #expect(RoutingFixtures.directory.isRetired(AGS("01059011")!))
    }

    @Test("Gemeinde rule for its own service; AGS and ARS meet")
    func gemeindeLevel() throws {
        let byAGS = try route(RoutingKeys(ags: "05315000", leistung: RoutingFixtures.meldewesen)).get()
        #expect(byAGS.postfach.value == "gemeinde-05315000-koeln")
        #expect(byAGS.rule.level == .gemeinde)
        let byARS = try route(RoutingKeys(ars: "053150000000", leistung: RoutingFixtures.meldewesen)).get()
        #expect(byARS.postfach == byAGS.postfach)
        let byKennung = try route(RoutingKeys(leistung: RoutingFixtures.meldewesen, behoerdenkennung: "05315000",
                                              behoerdenkennungPraefix: "mel")).get()
        #expect(byKennung.postfach == byAGS.postfach)
    }

    @Test("building permits of a Kreis municipality go to the Kreis; kreisfreie Städte fall back to the Land")
    func kreisLevel() throws {
        let inKreis = try route(RoutingKeys(ags: "05158004", leistung: RoutingFixtures.baugenehmigung)).get()
        #expect(inKreis.postfach.value == "kreis-05158-bauaufsicht")
        #expect(inKreis.rule.level == .kreis)
        #expect(inKreis.steps.first?.rule == nil && inKreis.steps.count > 2)
        let sameTownOtherService = try route(RoutingKeys(ags: "05158004", leistung: RoutingFixtures.meldewesen)).get()
        #expect(sameTownOtherService.rule.level == .gemeinde)
        let koeln = try route(RoutingKeys(ags: "05315000", leistung: RoutingFixtures.baugenehmigung)).get()
        #expect(koeln.postfach.value == "land-05-nordrhein-westfalen")
        #expect(koeln.rule.level == .land)
    }

    @Test("Gemeindeverband rule (ARS level 9) in Rheinland-Pfalz")
    func verbandLevel() throws {
        let rule = try #require(RoutingFixtures.router.tables[0].rules.first { $0.level == .verband })
        let member = try #require((0..<1000).lazy.compactMap { n -> ARS? in
            ARS(rule.area + String(format: "%03d", n)).flatMap { RoutingFixtures.directory.municipality($0) != nil ? $0 : nil }
        }.first)
        let decision = try route(RoutingKeys(ags: member.ags.digits, leistung: RoutingFixtures.meldewesen)).get()
        #expect(decision.postfach == rule.postfach)
        let otherService = try route(RoutingKeys(ags: member.ags.digits, leistung: RoutingFixtures.baugenehmigung)).get()
        #expect(otherService.rule.level == .land)
    }

    @Test("every current municipality is routable, and NRW Meldewesen always reaches its own Gemeinde")
    func everyMunicipality() throws {
        let text = try String(contentsOf: RoutingFixtures.folder.appendingPathComponent("gemeinden_ags_ars_2026-04-30.csv"), encoding: .utf8)
        var count = 0
        for row in CSV.parse(text).dropFirst() where row.count > 1 {
            let decision = try route(RoutingKeys(ags: row[0], leistung: RoutingFixtures.meldewesen)).get()
            if row[0].hasPrefix("05") {
                #expect(decision.postfach.value.hasPrefix("gemeinde-\(row[0])-"))
            } else {
                #expect([.land, .verband].contains(decision.rule.level))
            }
            count += 1
        }
        #expect(count == 11_227)
    }

    @Test("retired, unknown, missing and malformed keys are unroutable with their reason")
    func unroutable() throws {
        let retired = try String(contentsOf: RoutingFixtures.folder.appendingPathComponent("ags-retired-since-2011.txt"), encoding: .utf8)
            .split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(retired.count == 681)
        for ags in retired {
            guard case .failure(let reason) = route(RoutingKeys(ags: String(ags))) else {
                Issue.record("\(ags) must be unroutable"); continue
            }
            #expect(reason.code == "route.key-retired")
        }
        #expect(route(RoutingKeys(ags: "05999999")).failureCode == "route.key-unknown")
        #expect(route(RoutingKeys(leistung: RoutingFixtures.meldewesen)).failureCode == "route.key-missing")
        #expect(route(RoutingKeys(ags: "05315000", leistung: "12345")).failureCode == "route.key-invalid")
        #expect(route(RoutingKeys(ags: "05315000", behoerdenkennung: "not a kennung")).failureCode == "route.key-invalid")
    }

    @Test("the routing-key traversal inputs of the bad-input catalogue all end unroutable",
          .enabled(if: TestEnvironment.badInputTestsEnabled))
    func traversalKeys() throws {
        let badInputs = try #require(TestEnvironment.badInputs)
        let files = try FileManager.default.contentsOfDirectory(atPath: badInputs.path).filter { $0.hasPrefix("19") }
        #expect(files.count == 10)
        for file in files {
            let text = try String(contentsOf: badInputs.appendingPathComponent(file), encoding: .utf8)
            let start = try #require(text.range(of: "<gemeindeschluessel>"))
            let end = try #require(text.range(of: "</gemeindeschluessel>"))
            let value = String(text[start.upperBound..<end.lowerBound])
            #expect(route(RoutingKeys(ags: value)).failureCode == "route.key-invalid", "\(file)")
        }
    }

    @Test("a DVDV prefix list, when configured, is enforced")
    func prefixes() throws {
        let router = try Router(tables: RoutingFixtures.router.tables, directory: RoutingFixtures.directory, dvdvPrefixes: ["mel", "psw"])
        #expect((try? router.route(RoutingKeys(behoerdenkennung: "psw:05315000"), at: RoutingFixtures.day).get()) != nil)
        #expect(router.route(RoutingKeys(behoerdenkennung: "xyz:05315000"), at: RoutingFixtures.day).failureCode == "route.prefix-unknown")
    }

    @Test("a service rule beats a generic rule at the same level; the more specific level beats both")
    func precedence() throws {
        let table = try RoutingFixtures.table("""
            *\t05158\tkreis-generic
            99115001001000\t05158\tkreis-melde
            *\t05158004\tgemeinde-generic
            *\t05\tland
            """)
        let router = try Router(tables: [table], directory: RoutingFixtures.directory)
        func postfach(_ ags: String, _ service: String?) -> String? {
            try? router.route(RoutingKeys(ags: ags, leistung: service), at: RoutingFixtures.day).get().postfach.value
        }
        #expect(postfach("05158004", "99115001001000") == "gemeinde-generic")
        #expect(postfach("05158008", "99115001001000") == "kreis-melde")
        #expect(postfach("05158008", "99013001000000") == "kreis-generic")
        #expect(postfach("05158008", nil) == "kreis-generic")
        #expect(postfach("05315000", nil) == "land")
    }

    @Test("configuration errors are reported at load time with file and line")
    func loadErrors() throws {
        #expect(throws: RoutingError.self) { try RoutingFixtures.table("*\t05158004\ta\n*\t051580004004\tb\n") }
        do {
            _ = try RoutingFixtures.table("*\t05\ta\n*\t05\tb\n")
            Issue.record("ambiguous table accepted")
        } catch let error as RoutingError {
            #expect(error.code == .tableAmbiguous)
            #expect(error.line == 5)
            #expect(error.message.contains("line 4"))
        }
        for (body, fragment) in [("*\t05999999\ta\n", "not a current municipality"), ("*\t0531\ta\n", "area must be"),
                                 ("x\t05\ta\n", "service must be"), ("*\t05\t../etc\n", "postfach names")] {
            do {
                _ = try RoutingFixtures.table(body)
                Issue.record("accepted: \(body)")
            } catch let error as RoutingError {
                #expect(error.message.contains(fragment), "\(error)")
                #expect(error.line == 4)
            }
        }
        #expect(throws: RoutingError.self) { try RoutingFixtures.table("*\t05\ta\n", validFrom: "2026-02-30") }
    }

    @Test("dated tables: the newest table valid on the day applies")
    func datedTables() throws {
        let old = try RoutingFixtures.table("*\t05\told\n", validFrom: "2020-01-01")
        let new = try RoutingFixtures.table("*\t05\tnew\n", validFrom: "2026-06-01")
        let router = try Router(tables: [new, old], directory: RoutingFixtures.directory)
        #expect(try router.route(RoutingKeys(ags: "05315000"), at: RoutingTable.day("2026-05-31")!).get().postfach.value == "old")
        #expect(try router.route(RoutingKeys(ags: "05315000"), at: RoutingTable.day("2026-06-01")!).get().postfach.value == "new")
        #expect(router.route(RoutingKeys(ags: "05315000"), at: RoutingTable.day("2019-12-31")!).failureCode == "route.no-table")
        #expect(throws: RoutingError.self) { try Router(tables: [old, old], directory: nil) }
    }
}

extension Result where Failure == Unroutable {
    var failureCode: String? {
        if case .failure(let reason) = self { return reason.code }
        return nil
    }
}
