@testable import AmtsboteService
import AmtsboteTestSupport
import Foundation
import Testing

@Suite("Docs/openapi.yaml describes the routes the service has")
struct OpenAPITests {
    static let document = TestEnvironment.projectRoot.appendingPathComponent("Docs/openapi.yaml")

    /// The `paths` of the description with their methods (its own two-space layout, read line by line).
    static func documentedRoutes() throws -> Set<String> {
        var routes: Set<String> = []
        var path: String?
        var inPaths = false
        for line in try String(contentsOf: document, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "paths:" { inPaths = true; continue }
            if inPaths, let first = line.first, first != " " { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"), let path {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(method) { routes.insert("\(method) \(path)") }
            }
        }
        return routes
    }

    @Test("the same routes: documented ⇔ registered, and each answered by its handler on a live server")
    func routesInStep() async throws {
        let registered = Set(IntakeService.routes.map { "\($0.method) \($0.path)" })
        #expect(try Self.documentedRoutes() == registered)
        let server = try await TestServer()
        for route in IntakeService.routes where route.method == "GET" {
            let path = route.path.replacingOccurrences(of: "{id}", with: "1")
                .replacingOccurrences(of: "{code}", with: "service.busy")
            let answer = try await server.get(path)
            // An unmatched route is Hummingbird's empty 404; every handler answers with a body.
            #expect(!answer.body.isEmpty, "\(route.method) \(route.path) answered \(answer.status) without a body")
        }
        let post = try await server.post(Data("<a/>".utf8))
        #expect(post.status == 202)
        try await server.stop()
    }

    /// Whether python3 has openapi-spec-validator (scripts/test installs it); under CI its absence is a failure.
    static let validatorAvailable: Bool = {
        (try? run(["python3", "-c", "import openapi_spec_validator"]).status) == 0
    }()

    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        try ProcessStart.serialized {
            process.standardOutput = output
            process.standardError = output
            try process.run()
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    @Test("the description is valid OpenAPI 3 (openapi-spec-validator)",
          .enabled(if: validatorAvailable || TestEnvironment.sharedMaterialRequired,
                   "openapi-spec-validator is not installed (pip install openapi-spec-validator)"))
    func validDescription() throws {
        let result = try Self.run(["python3", "-m", "openapi_spec_validator", Self.document.path])
        #expect(result.status == 0, "\(result.output)")
    }
}
