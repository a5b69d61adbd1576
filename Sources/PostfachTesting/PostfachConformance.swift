import Foundation
import Postfach
import Testing

/// The conformance suite every `PostfachBackend` must pass: round trip, same id twice, the same id with different
/// payloads at once, failures, cancellation.
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

    /// What a kind of backend cannot promise.
    public struct Options: Sendable {
        /// A network backend cannot know whether the receiver stored a request it cancelled mid-way: such a
        /// delivery may arrive (whole), and the retry must then find it present.
        public var cancelledMayArrive: Bool

        public init(cancelledMayArrive: Bool = false) {
            self.cancelledMayArrive = cancelledMayArrive
        }
    }

    /// Runs every check against `backend`.
    public static func check(_ backend: any PostfachBackend, options: Options = Options(), read: Reader) async throws {
        let workspace = FileManager.default.temporaryDirectory.appendingPathComponent("postfach-conformance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: workspace) }
        try await roundTrip(backend, read: read, workspace: workspace)
        try await sameIDTwice(backend, read: read, workspace: workspace)
        try await sameIDConcurrently(backend, read: read, workspace: workspace)
        try await failures(backend, read: read, workspace: workspace)
        try await cancellation(backend, read: read, workspace: workspace, options: options)
    }

    /// Writes a payload file and describes it as a delivery.
    public static func delivery(_ bytes: Data, id: String, postfach: String, in workspace: URL) throws -> Delivery {
        let file = workspace.appendingPathComponent("\(UUID().uuidString).xml")
        try bytes.write(to: file)
        return Delivery(id: id, postfach: postfach, payload: file, payloadSHA256: sha256Hex(bytes),
                        payloadSize: Int64(bytes.count), receivedAt: Date(timeIntervalSince1970: 1_800_000_000),
                        metadata: DeliveryMetadata(schemaId: "conformance-1.0"))
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
        // A small payload the ledger keeps comes in memory: the same delivery, the same bytes.
        var inMemory = try Self.delivery(bytes, id: "rt-memory-\(UUID().uuidString)", postfach: "conformance-a", in: workspace)
        inMemory.payload = .bytes(Array(bytes))
        let memoryReceipt = try await backend.deliver(inMemory)
        #expect(memoryReceipt.payloadSHA256 == inMemory.payloadSHA256 && !memoryReceipt.alreadyPresent)
        #expect(try await read("conformance-a", inMemory.id) == bytes, "a payload in memory arrives byte for byte")
        var wrongSize = try Self.delivery(bytes, id: "rt-size-\(UUID().uuidString)", postfach: "conformance-a", in: workspace)
        wrongSize.payload = .bytes(Array(bytes.dropLast()))
        await #expect(throws: PostfachError.self, "bytes of another size than declared are refused") {
            _ = try await backend.deliver(wrongSize)
        }
        #expect(try await read("conformance-a", wrongSize.id) == nil)
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

    /// Two deliveries of one id with different payloads, at the same time, many times over: exactly one wins,
    /// the other gets `conflict`, and the Postfach holds the winner's payload.
    static func sameIDConcurrently(_ backend: any PostfachBackend, read: Reader, workspace: URL) async throws {
        for round in 0..<25 {
            let id = "race-\(round)-\(UUID().uuidString)"
            let payloads = [Data("<a>first \(round)</a>".utf8), Data("<a>second \(round)</a>".utf8)]
            let deliveries = try payloads.map { try delivery($0, id: id, postfach: "conformance-a", in: workspace) }
            let outcomes = await withTaskGroup(of: (Int, Result<Receipt, any Error>).self) { group in
                for (index, delivery) in deliveries.enumerated() {
                    group.addTask {
                        do { return (index, .success(try await backend.deliver(delivery))) } catch { return (index, .failure(error)) }
                    }
                }
                var outcomes: [Int: Result<Receipt, any Error>] = [:]
                for await (index, outcome) in group { outcomes[index] = outcome }
                return outcomes
            }
            let winners = outcomes.filter { if case .success = $0.value { return true } else { return false } }
            try #require(winners.count == 1, "round \(round): \(winners.count) deliveries of one id with different payloads succeeded")
            let winner = winners.first!.key
            if case .failure(let error) = outcomes[1 - winner]! {
                #expect((error as? PostfachError)?.code == .conflict, "round \(round): the loser must get conflict, got \(error)")
            }
            if case .success(let receipt) = outcomes[winner]! {
                #expect(!receipt.alreadyPresent && receipt.payloadSHA256 == deliveries[winner].payloadSHA256)
            }
            #expect(try await read("conformance-a", id) == payloads[winner], "round \(round): the Postfach holds the winner's payload")
        }
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
        missing.payload = .file(workspace.appendingPathComponent("does-not-exist.xml"))
        await #expect(throws: PostfachError.self) { _ = try await backend.deliver(missing) }
        #expect(try await read("conformance-a", missing.id) == nil, "a failed delivery leaves nothing visible")
    }

    static func cancellation(_ backend: any PostfachBackend, read: Reader, workspace: URL, options: Options) async throws {
        let bytes = Data(repeating: UInt8(ascii: "x"), count: 8 << 20)
        let delivery = try delivery(bytes, id: "cancel-\(UUID().uuidString)", postfach: "conformance-a", in: workspace)
        // Cancelled for certain before the backend is called: the backend must notice, say `cancelled` and leave
        // nothing visible.
        let gate = AsyncStream<Void>.makeStream()
        let task = Task {
            for await _ in gate.stream {}
            return try await backend.deliver(delivery)
        }
        task.cancel()
        gate.continuation.finish()
        do {
            let receipt = try await task.value
            Issue.record("a cancelled delivery completed: \(receipt.location)")
        } catch let error as PostfachError {
            #expect(error.code == .cancelled, "\(error)")
            #expect(error.isRetryable)
        } catch {
            #expect(error is CancellationError, "\(error)")
        }
        #expect(try await read("conformance-a", delivery.id) == nil, "a cancelled delivery leaves nothing visible")

        // Cancelled while it may be under way: either whole or nothing, never a part.
        let racing = Task { try await backend.deliver(delivery) }
        racing.cancel()
        do {
            let receipt = try await racing.value
            #expect(receipt.deliveryID == delivery.id)
            #expect(try await read("conformance-a", delivery.id) == bytes, "a delivery that completed is whole")
        } catch {
            #expect((error as? PostfachError)?.code == .cancelled || error is CancellationError, "\(error)")
            let held = try await read("conformance-a", delivery.id)
            if options.cancelledMayArrive {
                #expect(held == nil || held == bytes, "a cancelled delivery that arrived is whole")
            } else {
                #expect(held == nil, "a cancelled delivery leaves nothing visible")
            }
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
    Hex.lowercase(SHA256.hash(data: data))
}
