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

    @Test("filesystem: a delivery in flight holds its id; another payload under that id gets conflict and changes nothing")
    func filesystemClaimInFlight() async throws {
        let root = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let backend = try FilesystemBackend(root: root)
        let workspace = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: workspace) }
        let first = try PostfachConformance.delivery(Data("<a>first</a>".utf8), id: "in-flight", postfach: "p", in: workspace)
        let second = try PostfachConformance.delivery(Data("<a>second</a>".utf8), id: "in-flight", postfach: "p", in: workspace)
        // The first delivery has linked its metadata and not yet its payload (the moment two racing deliveries meet).
        let metadata = root.appendingPathComponent("p/in-flight.json")
        try FileManager.default.createDirectory(at: metadata.deletingLastPathComponent(), withIntermediateDirectories: true)
        let claim = Data(#"{"id": "in-flight", "payloadSHA256": "\#(first.payloadSHA256)"}"#.utf8)
        try claim.write(to: metadata)
        await #expect(throws: PostfachError(code: .conflict, message: "the Postfach holds a different payload under the id in-flight")) {
            _ = try await backend.deliver(second)
        }
        #expect(try Data(contentsOf: metadata) == claim, "the claim was replaced")
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("p/in-flight.xml").path))
        // The first one completes.
        let receipt = try await backend.deliver(first)
        #expect(try Data(contentsOf: URL(fileURLWithPath: receipt.location)) == Data("<a>first</a>".utf8))
    }

    @Test("filesystem: clearing .incoming removes what gone processes left, never a running process's files")
    func filesystemIncomingOwners() throws {
        let root = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let backend = try FilesystemBackend(root: root)
        let incoming = root.appendingPathComponent(".incoming")
        let current = ProcessIdentity.current
        let gone = ProcessIdentity(bootID: current.bootID, pid: current.pid, startTicks: current.startTicks + 1)
        let running = try #require(ProcessIdentity.running(pid: getppid()))
        let names = ["\(running)~p.id.token.tmp", "\(gone)~p.id.token.tmp", "p.id.legacy.tmp"]
        for name in names { try Data("x".utf8).write(to: incoming.appendingPathComponent(name)) }
        backend.removeIncompleteFiles()
        #expect(try FileManager.default.contentsOfDirectory(atPath: incoming.path) == [names[0]])
        #expect(running.isAlive && !gone.isAlive)
        #expect(ProcessIdentity(running.description) == running)
        // A reboot ends every process; another machine or container cannot be looked into, so its work is left alone.
        #expect(!ProcessIdentity(bootID: "0123456789abcdef", pid: current.pid, startTicks: current.startTicks).isAlive)
        #expect(ProcessIdentity(machineID: "anotherhost", bootID: current.bootID, pid: 999_999, startTicks: 1).isAlive)
        #expect(ProcessIdentity(bootID: current.bootID, pidNamespace: current.pidNamespace + 1, pid: 999_999, startTicks: 1).isAlive)
    }

    @Test("in-memory backend")
    func memory() async throws {
        let backend = InMemoryBackend()
        try await PostfachConformance.check(backend) { postfach, id in
            await backend.contents(of: postfach)[id]?.payload
        }
    }

    @Test("registry builds backends by kind and names the kinds it knows")
    func registry() async throws {
        let registry = PostfachBackendRegistry.builtIn
        #expect(registry.kinds == ["filesystem", "memory"])
        let base = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        let backend = try await registry.make(kind: "filesystem", settings: BackendSettings(parameters: ["directory": "out"], baseDirectory: base))
        #expect((backend as? FilesystemBackend)?.root.path == base.appendingPathComponent("out").path)
        await #expect(throws: PostfachError.self) { try await registry.make(kind: "ftp", settings: BackendSettings(parameters: [:], baseDirectory: base)) }
        await #expect(throws: PostfachError.self) { try await registry.make(kind: "filesystem", settings: BackendSettings(parameters: [:], baseDirectory: base)) }
    }

    @Test("secrets come from an environment variable or a file, never from the configuration itself")
    func secrets() throws {
        let base = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: base) }
        try Data("s3cret-from-file\n".utf8).write(to: base.appendingPathComponent("token.txt"))
        func settings(_ parameters: [String: String]) -> BackendSettings {
            BackendSettings(parameters: parameters, baseDirectory: base, environment: ["POSTFACH_TOKEN": "s3cret-from-env"])
        }
        #expect(try settings(["tokenEnv": "POSTFACH_TOKEN"]).secret("token") == "s3cret-from-env")
        #expect(try settings(["tokenFile": "token.txt"]).secret("token") == "s3cret-from-file")
        #expect(try settings([:]).secret("token") == nil)
        let written = try #require(throws: PostfachError.self) { try settings(["token": "plain"]).secret("token") }
        #expect(written.message.contains("must not be written into the configuration"))
        #expect(throws: PostfachError.self) { try settings(["tokenEnv": "UNSET_VARIABLE"]).secret("token") }
        #expect(throws: PostfachError.self) { try settings(["tokenFile": "missing.txt"]).secret("token") }
    }
}
