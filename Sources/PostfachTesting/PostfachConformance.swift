import Foundation
import Postfach
import Testing

/// The conformance suite every `PostfachBackend` must pass: round trip, same id twice, failures, cancellation.
///
/// Call it from a test with a fresh backend and a way to read back what a Postfach holds:
/// ```swift
/// @Test func conformance() async throws {
///     let backend = try FilesystemBackend(root: dir)
///     try await PostfachConformance.check(backend) { postfach, id in try? Data(contentsOf: dir/postfach/id.xml) }
/// }
/// ```
public enum PostfachConformance {
    /// Reads the payload a Postfach holds under an id, or nil when it holds none.
    public typealias Reader = @Sendable (_ postfach: String, _ id: String) async throws -> Data?

    /// Runs every check against `backend`.
    public static func check(_ backend: any PostfachBackend, read: Reader) async throws {
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("postfach-conformance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: workspace) }
        try await roundTrip(backend, read: read, workspace: workspace)
        try await sameIDTwice(backend, read: read, workspace: workspace)
        try await failures(backend, read: read, workspace: workspace)
        try await cancellation(backend, read: read, workspace: workspace)
    }

    /// Writes a payload file and describes it as a delivery.
    public static func delivery(_ bytes: Data, id: String, postfach: String, in workspace: URL) throws -> Delivery {
        let file = workspace.appendingPathComponent("\(UUID().uuidString).xml")
        try bytes.write(to: file)
        return Delivery(id: id, postfach: postfach, payload: file, payloadSHA256: sha256Hex(bytes),
                        payloadSize: Int64(bytes.count), receivedAt: Date(timeIntervalSince1970: 1_800_000_000),
                        metadata: ["schema": "conformance-1.0"])
    }

    static func roundTrip(_ backend: any PostfachBackend, read: Reader, workspace: URL) async throws {
        let bytes = Data("<antrag>Grüße – \(UUID().uuidString)</antrag>\n".utf8)
        let delivery = try delivery(bytes, id: "rt-\(UUID().uuidString)", postfach: "conformance-a", in: workspace)
        let receipt = try await backend.deliver(delivery)
        #expect(receipt.deliveryID == delivery.id)
        #expect(receipt.postfach == "conformance-a")
        #expect(receipt.backend == backend.kind)
        #expect(receipt.payloadSHA256 == delivery.payloadSHA256)
        #expect(!receipt.alreadyPresent)
        #expect(!receipt.location.isEmpty)
        #expect(try await read("conformance-a", delivery.id) == bytes, "payload must arrive byte for byte")
        #expect(try await read("conformance-b", delivery.id) == nil, "only the named Postfach receives it")
    }

    static func sameIDTwice(_ backend: any PostfachBackend, read: Reader, workspace: URL) async throws {
        let id = "twice-\(UUID().uuidString)"
        let bytes = Data("<a>1</a>".utf8)
        let first = try await backend.deliver(try delivery(bytes, id: id, postfach: "conformance-a", in: workspace))
        let again = try await backend.deliver(try delivery(bytes, id: id, postfach: "conformance-a", in: workspace))
        #expect(again.alreadyPresent, "a resend must be recognised")
        #expect(again.location == first.location)
        #expect(try await read("conformance-a", id) == bytes)
        await #expect(throws: PostfachError.self) {
            _ = try await backend.deliver(try delivery(Data("<a>2</a>".utf8), id: id, postfach: "conformance-a", in: workspace))
        }
        do {
            _ = try await backend.deliver(try delivery(Data("<a>2</a>".utf8), id: id, postfach: "conformance-a", in: workspace))
        } catch let error as PostfachError {
            #expect(error.code == .conflict)
            #expect(!error.isRetryable)
        }
        #expect(try await read("conformance-a", id) == bytes, "the first payload is never overwritten")
    }

    static func failures(_ backend: any PostfachBackend, read: Reader, workspace: URL) async throws {
        for (id, postfach) in [("../escape", "conformance-a"), ("ok-id", "../escape"), ("", "conformance-a"),
                               ("ok-id", "Großbuchstaben"), (".hidden", "conformance-a")] {
            do {
                _ = try await backend.deliver(try delivery(Data("<a/>".utf8), id: id, postfach: postfach, in: workspace))
                Issue.record("accepted id '\(id)' for Postfach '\(postfach)'")
            } catch let error as PostfachError {
                #expect(error.code == .rejected)
                #expect(!error.isRetryable)
            }
        }
        var missing = try delivery(Data("<a/>".utf8), id: "missing-\(UUID().uuidString)", postfach: "conformance-a", in: workspace)
        missing.payload = workspace.appendingPathComponent("does-not-exist.xml")
        await #expect(throws: PostfachError.self) { _ = try await backend.deliver(missing) }
        #expect(try await read("conformance-a", missing.id) == nil, "a failed delivery leaves nothing visible")
    }

    static func cancellation(_ backend: any PostfachBackend, read: Reader, workspace: URL) async throws {
        let bytes = Data(repeating: UInt8(ascii: "x"), count: 8 << 20)
        let delivery = try delivery(bytes, id: "cancel-\(UUID().uuidString)", postfach: "conformance-a", in: workspace)
        let task = Task { try await backend.deliver(delivery) }
        task.cancel()
        do {
            let receipt = try await task.value
            #expect(receipt.deliveryID == delivery.id)
            #expect(try await read("conformance-a", delivery.id) == bytes, "a delivery that completed is whole")
        } catch let error as PostfachError {
            #expect(error.code == .cancelled)
            #expect(try await read("conformance-a", delivery.id) == nil, "a cancelled delivery leaves nothing visible")
        } catch is CancellationError {
            #expect(try await read("conformance-a", delivery.id) == nil, "a cancelled delivery leaves nothing visible")
        }
        // After a cancellation the backend still works, and the same id can be delivered.
        let retried = try await backend.deliver(delivery)
        #expect(retried.deliveryID == delivery.id)
        #expect(try await read("conformance-a", delivery.id) == bytes)
    }
}

import Crypto

/// SHA-256 of `data`, lower-case hex.
public func sha256Hex(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}
