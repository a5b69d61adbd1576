import AmtsboteTestSupport
import Foundation
import Postfach
import PostfachTesting
import Testing

@Suite("Every backend passes the conformance suite")
struct BackendConformanceTests {
    @Test("filesystem backend")
    func filesystem() async throws {
        let root = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let backend = try FilesystemBackend(root: root)
        try await PostfachConformance.check(backend) { postfach, id in
            try? Data(contentsOf: root.appendingPathComponent(postfach).appendingPathComponent(id + ".xml"))
        }
        // Nothing but complete payloads and their metadata in the Postfach directories.
        for postfach in try FileManager.default.contentsOfDirectory(atPath: root.path) where postfach != ".incoming" {
            let files = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(postfach).path)
            #expect(files.allSatisfy { $0.hasSuffix(".xml") || $0.hasSuffix(".json") }, "\(files)")
        }
    }

    @Test("in-memory backend")
    func memory() async throws {
        let backend = InMemoryBackend()
        try await PostfachConformance.check(backend) { postfach, id in
            await backend.contents(of: postfach)[id]?.payload
        }
    }

    @Test("registry builds backends by kind and names the kinds it knows")
    func registry() throws {
        let registry = PostfachBackendRegistry.builtIn
        #expect(registry.kinds == ["filesystem", "memory"])
        let base = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let backend = try registry.make(kind: "filesystem", parameters: ["directory": "out"], baseDirectory: base)
        #expect((backend as? FilesystemBackend)?.root.path == base.appendingPathComponent("out").path)
        #expect(throws: PostfachError.self) { try registry.make(kind: "ftp", parameters: [:], baseDirectory: base) }
        #expect(throws: PostfachError.self) { try registry.make(kind: "filesystem", parameters: [:], baseDirectory: base) }
    }
}
