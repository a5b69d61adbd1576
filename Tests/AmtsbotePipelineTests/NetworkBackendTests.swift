import AmtsboteTestSupport
import Foundation
import Postfach
import PostfachHTTP
import PostfachStandIn
import ServiceLifecycle
import Testing
@testable import AmtsbotePipeline

/// Backends that talk to a server: references recorded before an irreversible step, and deliveries under faults.
@Suite("Network backends in the pipeline")
struct NetworkBackendTests {
    @Test("a backend that fails between its phases resumes from its recorded reference: one create per delivery")
    func resumeBetweenPhases() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let backend = TwoPhaseBackend()
        let ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
        let pipeline = Pipeline(validator: Harness.validator, router: Harness.router, backends: BackendSelection(default: backend),
                                ledger: ledger, spool: try Spool(directory: directory.appendingPathComponent("spool")),
                                retry: RetryPolicy(maxAttempts: 5, initialDelay: .milliseconds(1)), deliversOnIntake: true)
        let inbox = directory.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try SampleSubmissions.write(count: 5, into: inbox)
        for n in 0..<5 {
            // The first attempt creates, records and then fails before its second step.
            let row = try await pipeline.submit(file: inbox.appendingPathComponent(String(format: "antrag-%05d.xml", n)).path)
            #expect(row.state == .queued && row.externalReference != nil, "\(row.state) \(row.reasonCode ?? "")")
        }
        try await pipeline.drain(waitingAtMost: .seconds(60))
        let rows = try await ledger.submissions(states: nil, limit: nil)
        #expect(rows.allSatisfy { $0.state == .delivered }, "\(rows.map(\.state))")
        #expect(await backend.creates == 5, "one create per delivery, not one per attempt")
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        for row in rows {
            let receipt = try #require(row.receipt.flatMap { try decoder.decode(Receipt.self, from: Data($0.utf8)) })
            #expect(receipt.location == row.externalReference, "the second attempt used the first one's reference")
        }
    }

    @Test("1,000 deliveries over HTTP with 429s, 503s, slow answers and dropped connections: none lost, none stored twice")
    func httpUnderFaults() async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let count = Int(ProcessInfo.processInfo.environment["AMTSBOTE_HTTP_FAULT_DELIVERIES"] ?? "") ?? 1000
        let faults = StandInFaults(rateLimited: 0.03, unavailable: 0.03, slow: 0.02, reset: 0.03, retryAfterSeconds: 1,
                                   slowFor: .seconds(3))
        let standIn = try StandInServer(port: 0, faults: faults, seed: 42)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = ServiceGroup(configuration: .init(services: [standIn.service { continuation.yield($0?.port ?? 0) }],
                                                      logger: .init(label: "test.standin")))
        let running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = await iterator.next() ?? 0
        // A slow answer (3 s) outlives the request's deadline (1 s): the sender gives up although the receiver stored it.
        let backend = try HTTPBackend(configuration: .init(url: "http://127.0.0.1:\(port)/postfach/{postfach}/{id}",
                                                           requestTimeout: .seconds(1)))
        let ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
        let pipeline = Pipeline(validator: Harness.validator, router: Harness.router, backends: BackendSelection(default: backend),
                                ledger: ledger, spool: try Spool(directory: directory.appendingPathComponent("spool")),
                                retry: RetryPolicy(maxAttempts: 100, initialDelay: .milliseconds(5), maxDelay: .milliseconds(100)),
                                deliversOnIntake: false)
        let inbox = directory.appendingPathComponent("inbox")
        try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
        try SampleSubmissions.write(count: count, into: inbox)
        for n in 0..<count {
            let row = try await pipeline.submit(file: inbox.appendingPathComponent(String(format: "antrag-%05d.xml", n)).path)
            #expect(row.state == .queued)
        }
        let summary = try await DeliveryWorker(pipeline: pipeline, concurrency: 16, poll: .milliseconds(100), drain: true).run()

        let rows = try await ledger.submissions(states: nil, limit: nil)
        #expect(rows.count == count && rows.allSatisfy { $0.state == .delivered },
                "\(Dictionary(grouping: rows, by: \.state).mapValues(\.count))")
        let entries = await standIn.received.all
        #expect(entries.count == count, "each delivery arrived")
        let digestsSent = entries.allSatisfy { $0.digestSent }
        #expect(digestsSent, "every request carried its digest; a wrong one would have been refused")
        // A sender that sent twice without cause would show more requests than faults explain.
        let unexplained = entries.filter { $0.requests - 1 > $0.faults }
        #expect(unexplained.isEmpty, "requests repeated without a fault before them: \(unexplained.map(\.id))")
        let stored = Dictionary(uniqueKeysWithValues: entries.map { ($0.id, $0.sha256) })
        #expect(rows.allSatisfy { stored[$0.deliveryId ?? ""] == $0.payloadSHA256 }, "the receiver holds what was sent")
        let present = rows.filter { $0.receipt?.contains("\"alreadyPresent\":true") == true }.count
        print("http under faults: \(count) delivered in \(summary.attempts) attempts, \(entries.map(\.requests).reduce(0, +)) "
              + "requests at the receiver, \(present) found already present after a lost answer")
        #expect(summary.attempts > count, "the faults happened")
        await backend.shutdown()
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

/// Creates a transfer (recording its reference), then sends it; the first attempt of each delivery fails in between.
actor TwoPhaseBackend: PostfachBackend {
    nonisolated let kind = "two-phase"
    private(set) var creates = 0
    private var failedOnce: Set<String> = []

    func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        var context = context
        if context.reference == nil {
            creates += 1
            try await context.record("transfer-\(creates)")
        }
        if failedOnce.insert(delivery.id).inserted {
            throw PostfachError(code: .unavailable, message: "failed between create and send")
        }
        return Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind, location: context.reference ?? "",
                       deliveredAt: Date(), payloadSHA256: delivery.payloadSHA256, alreadyPresent: false)
    }
}
