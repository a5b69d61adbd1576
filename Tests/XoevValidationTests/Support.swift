import AmtsboteTestSupport
import Foundation
import XoevValidation

/// Schema sets used by several suites, compiled once per test process.
enum Fixtures {
    static let ownSchemas: SchemaSet = {
        do {
            return try SchemaSet(manifestAt: TestEnvironment.projectRoot.appendingPathComponent("Schemas").path)
        } catch {
            fatalError("the project's own schema set must load: \(error)")
        }
    }()

    static func samples(_ folder: String) -> [String] {
        let directory = TestEnvironment.projectRoot.appendingPathComponent("Samples/\(folder)")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".xml") }.sorted()
    }

    static func sample(_ folder: String, _ name: String) -> String {
        TestEnvironment.projectRoot.appendingPathComponent("Samples/\(folder)/\(name)").path
    }

    /// One finding per line, as in golden files: `line:column: severity[code]: message (path)`.
    static func render(_ diagnostics: [Diagnostic]) -> String {
        diagnostics.map { "\($0.line):\($0.column): \($0.severity.rawValue)[\($0.code)]: \($0.message) (\($0.path))" }
            .joined(separator: "\n") + "\n"
    }
}
