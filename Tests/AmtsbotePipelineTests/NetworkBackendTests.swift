import AmtsboteTestSupport
import AsyncHTTPClient
import Foundation
import JOSE
import Postfach
import PostfachFITConnect
import PostfachHTTP
import PostfachStandIn
import ServiceLifecycle
import Testing
import X509
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
                                   slowFor: .seconds(4))
        let standIn = try StandInServer(port: 0, faults: faults, seed: 42)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = ServiceGroup(configuration: .init(services: [standIn.service { continuation.yield($0?.port ?? 0) }],
                                                      logger: .init(label: "test.standin")))
        let running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let port = await iterator.next() ?? 0
        // A slow answer (4 s) outlives the request's deadline (2 s): the sender gives up although the receiver stored it.
        let backend = try HTTPBackend(configuration: .init(url: "http://127.0.0.1:\(port)/postfach/{postfach}/{id}",
                                                           requestTimeout: .seconds(2)))
        let (pipeline, ledger) = try await queuedPipeline(backend, count: count, in: directory)
        let summary = try await deliverUntilFinal(pipeline, concurrency: 16)

        let rows = try await ledger.submissions(states: nil, limit: nil)
        #expect(rows.count == count && rows.allSatisfy { $0.state == .delivered },
                "\(Dictionary(grouping: rows, by: \.state).mapValues(\.count))")
        let entries = await standIn.received.all
        #expect(entries.count == count, "each delivery arrived")
        let digestsSent = entries.allSatisfy { $0.digestSent }
        #expect(digestsSent, "every request carried its digest; a wrong one would have been refused")
        // (Repeats are not compared with the faults here: on a loaded machine an answer may also miss the 2 s
        // deadline without an injected fault. The reset test in PostfachHTTPTests compares them without deadlines.)
        let stored = Dictionary(uniqueKeysWithValues: entries.map { ($0.id, $0.sha256) })
        #expect(rows.filter { stored[$0.deliveryId ?? ""] != $0.payloadSHA256 }.isEmpty, "the receiver holds what was sent")
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

/// The fit-connect backend against the stand-in's FIT-Connect subset, through the pipeline.
@Suite("fit-connect backend against the stand-in")
struct FITConnectBackendTests {
    static let options = FITConnectOptions(clientSecret: "s3cret", schemaURIs: ["urn:amtsbote:schema:wohnsitz.anmeldung-1.0"])

    static func run(_ standInOptions: FITConnectOptions = options, count: Int, faults: StandInFaults = StandInFaults(),
                    configure: (inout FITConnectBackend.Configuration) -> Void = { _ in },
                    check: (StandInServer, SQLiteLedger, StandInRun) async throws -> Void) async throws {
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let standIn = try StandInServer(port: 0, faults: faults, seed: 9, fitConnect: standInOptions)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = ServiceGroup(configuration: .init(services: [standIn.service { continuation.yield($0?.port ?? 0) }],
                                                      logger: .init(label: "test.standin")))
        let running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        let base = "http://127.0.0.1:\(await iterator.next() ?? 0)"
        var configuration = FITConnectBackend.Configuration(tokenURL: base + "/token", apiURL: base, clientID: "amtsbote-test",
                                                            clientSecret: "s3cret", defaultDestination: UUID().uuidString.lowercased())
        configuration.trustRoots = [try Certificate(pemEncoded: standIn.fitConnectAuthorityPEM ?? "")]
        configure(&configuration)
        let backend = try FITConnectBackend(configuration: configuration)
        let (pipeline, ledger) = try await queuedPipeline(backend, count: count, in: directory)
        _ = try await deliverUntilFinal(pipeline, concurrency: 8)
        try await check(standIn, ledger, StandInRun(pipeline: pipeline, base: base))
        await backend.shutdown()
        await group.triggerGracefulShutdown()
        try await running.value
    }

    @Test("submissions are encrypted, submitted once each and accepted by the receiver: hash, schema and key checked")
    func delivered() async throws {
        try await Self.run(count: 12) { standIn, ledger, _ in
            let rows = try await ledger.submissions(states: nil, limit: nil)
            #expect(rows.allSatisfy { $0.state == .delivered }, "\(rows.map { "\($0.state) \($0.reason ?? "")" })")
            let submissions = await standIn.fitConnectSubmissions
            #expect(submissions.count == 12 && submissions.allSatisfy { $0.state == "accepted" && $0.submitRequests == 1 },
                    "\(submissions.map { "\($0.state) \($0.problems)" })")
            #expect(Set(submissions.compactMap(\.dataSHA256)) == Set(rows.compactMap(\.payloadSHA256)), "the receiver decrypted our exact bytes")
            #expect(rows.allSatisfy { row in submissions.contains { row.externalReference?.contains($0.submissionID) == true } },
                    "each row records its submission before it was submitted")
            #expect(Set(submissions.compactMap(\.serviceIdentifier)).allSatisfy { $0.hasPrefix("urn:de:fim:leika:leistung:") })
        }
    }

    @Test("the receiver's accept is read from the event log, verified and kept verbatim as the evidence")
    func acceptRecorded() async throws {
        try await Self.run(count: 5) { standIn, ledger, run in
            #expect(try await ledger.submissions(states: nil, limit: nil).allSatisfy { $0.confirmation != nil },
                    "each FIT-Connect delivery awaits the receiver's answer")
            try await run.confirmAll(ledger)
            let rows = try await ledger.submissions(states: nil, limit: nil)
            for row in rows {
                #expect(row.state == .delivered && row.confirmation == .accepted && row.confirmedAt != nil && row.reasonCode == nil)
                let evidence = try #require(row.confirmationEvidence.flatMap(Claims.init))
                #expect(evidence.event.hasSuffix("/accept-submission"))
                #expect(row.externalReference?.contains(evidence.submission) == true, "the accept of this row's own submission")
            }
        }
    }

    @Test("held, forged, tampered and rejecting answers: only a verified answer about what was sent is recorded")
    func answersChecked() async throws {
        var hold = Self.options
        hold.holdVerdicts = true
        try await Self.run(hold, count: 3) { standIn, ledger, run in
            var pass = try await run.pipeline.checkConfirmations()
            #expect(pass.accepted + pass.rejected + pass.failed == 0, "no answer yet: \(pass)")
            try await run.release("?forge=1")
            pass = try await run.pipeline.checkConfirmations()
            #expect(pass.failed == 3 && pass.accepted == 0, "an accept signed with another key is not counted: \(pass)")
            try await run.release("?tamper=1")
            pass = try await run.pipeline.checkConfirmations()
            #expect(pass.failed == 3 && pass.accepted == 0, "an accept of other content is not counted: \(pass)")
            let waiting = try await ledger.submissions(states: nil, limit: nil)
            #expect(waiting.allSatisfy { $0.confirmation == .pending && $0.reasonCode == "postfach.confirmation-invalid" },
                    "the answer not counted stays visible on the row: \(waiting.map { "\($0.confirmation?.rawValue ?? "") \($0.reasonCode ?? "")" })")
            try await run.release("")
            try await run.confirmAll(ledger)
            #expect(try await ledger.submissions(states: nil, limit: nil).allSatisfy { $0.confirmation == .accepted && $0.reasonCode == nil },
                    "the genuine accept after the forged and tampered ones counts")
        }
        try await Self.run(hold, count: 2) { standIn, ledger, run in
            // No answer within the deadline: marked overdue, no longer asked.
            let impatient = Pipeline(validator: run.pipeline.validator, router: run.pipeline.router, backends: run.pipeline.backends,
                                     ledger: ledger, spool: run.pipeline.spool,
                                     retry: RetryPolicy(confirmationCheck: .zero, confirmationDeadline: .zero), deliversOnIntake: false)
            let pass = try await impatient.checkConfirmations()
            #expect(pass.overdue == 2, "\(pass)")
            for row in try await ledger.submissions(states: nil, limit: nil) {
                #expect(row.confirmation == .overdue && row.reasonCode == "postfach.confirmation-overdue")
            }
            try await run.release("")
            #expect(try await impatient.checkConfirmations().asked == 0, "an overdue row is not asked again")
        }
        try await Self.run(hold, count: 2) { standIn, ledger, run in
            try await run.release("?reject=1")
            try await run.confirmAll(ledger)
            for row in try await ledger.submissions(states: nil, limit: nil) {
                #expect(row.state == .delivered && row.confirmation == .rejected)
                #expect(row.reasonCode == "postfach.receiver-rejected" && row.reason?.contains("cannot process") == true, "\(row.reason ?? "")")
                #expect(row.confirmationEvidence.flatMap(Claims.init)?.event.hasSuffix("/reject-submission") == true)
            }
        }
    }

    /// 200 deliveries by default (the stand-in decrypts two RSA-4096 JWEs per submission, slow in a debug build);
    /// `AMTSBOTE_FIT_CONNECT_FAULT_DELIVERIES=1000` for the full run recorded in Docs/reliability.md.
    @Test("deliveries with 429s, 503s, slow answers and dropped connections on every FIT-Connect call: each submitted and accepted once")
    func underFaults() async throws {
        let count = Int(ProcessInfo.processInfo.environment["AMTSBOTE_FIT_CONNECT_FAULT_DELIVERIES"] ?? "") ?? 200
        let faults = StandInFaults(rateLimited: 0.03, unavailable: 0.03, slow: 0.02, reset: 0.03, retryAfterSeconds: 1,
                                   slowFor: .seconds(4))
        try await Self.run(count: count, faults: faults, configure: { $0.requestTimeout = .seconds(2) }) { standIn, ledger, run in
            let rows = try await ledger.submissions(states: nil, limit: nil)
            #expect(rows.count == count && rows.allSatisfy { $0.state == .delivered },
                    "\(rows.filter { $0.state != .delivered }.map { "\($0.state) \($0.reasonCode ?? "") \($0.reason ?? "")" })")
            let submissions = await standIn.fitConnectSubmissions
            let accepted = submissions.filter { $0.state == "accepted" }
            #expect(accepted.count == count, "each delivery submitted and accepted once: \(accepted.count)")
            let acceptedHashes = Set(accepted.compactMap(\.dataSHA256))
            #expect(acceptedHashes.count == accepted.count, "no payload accepted twice")
            #expect(rows.filter { !acceptedHashes.contains($0.payloadSHA256 ?? "") }.isEmpty,
                    "every payload decrypted, its hash checked and accepted")
            #expect(submissions.allSatisfy { $0.state != "rejected" })
            // Submits whose answer was lost were recognised from the event log; their accepts must still match.
            try await run.confirmAll(ledger)
            let confirmed = try await ledger.submissions(states: nil, limit: nil).filter { $0.confirmation == .accepted }.count
            #expect(confirmed == count, "every accept verified against the tags that were submitted: \(confirmed)")
            // A create whose answer was lost leaves a submission that is never submitted (FIT-Connect deletes them).
            let orphans = submissions.filter { $0.state == "created" }.count
            let repeated = submissions.filter { $0.submitRequests > 1 }.count
            print("fit-connect under faults: \(count) accepted once each, \(orphans) created and never submitted after a lost "
                  + "create answer, \(repeated) submits repeated after a lost answer and recognised")
        }
    }

    @Test("a failure between create and submit resumes the recorded submission: one submission per delivery, not two")
    func crashBetweenCreateAndSubmit() async throws {
        let failed = FailOnce()
        try await Self.run(count: 6, configure: { $0.afterCreate = { id in try await failed.first(id) } }) { standIn, ledger, _ in
            let rows = try await ledger.submissions(states: nil, limit: nil)
            #expect(rows.allSatisfy { $0.state == .delivered })
            let submissions = await standIn.fitConnectSubmissions
            #expect(submissions.count == 6, "one submission per delivery: \(submissions.count)")
            #expect(submissions.allSatisfy { $0.state == "accepted" })
            #expect(await failed.count == 6, "every delivery failed once between its steps")
        }
    }

    @Test("a key below 4096 bits or a schema the destination does not take: refused, nothing created")
    func refusals() async throws {
        var small = Self.options
        small.keyBits = 2048
        try await Self.run(small, count: 1) { standIn, ledger, _ in
            let row = try #require(try await ledger.submissions(states: nil, limit: nil).first)
            #expect(row.state == .dead && row.reasonCode == "postfach.rejected" && row.reason?.contains("4096") == true, "\(row.reason ?? "")")
            #expect(await standIn.fitConnectSubmissions.isEmpty)
        }
        try await Self.run(count: 1, configure: { $0.schemaURI = "urn:other:{schema}" }) { standIn, ledger, _ in
            let row = try #require(try await ledger.submissions(states: nil, limit: nil).first)
            #expect(row.state == .dead && row.reason?.contains("does not take the schema") == true, "\(row.reason ?? "")")
            #expect(await standIn.fitConnectSubmissions.isEmpty)
        }
    }
}

/// What a check of a stand-in run can use besides the stand-in and the ledger.
struct StandInRun {
    let pipeline: Pipeline
    let base: String

    /// `POST /_fit-connect/verdicts<query>` on the stand-in.
    func release(_ query: String) async throws {
        var request = HTTPClientRequest(url: base + "/_fit-connect/verdicts" + query)
        request.method = .POST
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        #expect(response.status == .ok)
    }

    /// Asks for the receivers' answers until no row awaits one; guarded against a hang (an answer that never
    /// comes), not against a slow machine: 50 rounds in a row without a new answer end it (with injected faults a
    /// round can miss the few rows left; 50 misses in a row do not happen by chance).
    func confirmAll(_ ledger: some LedgerStore) async throws {
        func pending() async throws -> Int {
            try await ledger.submissions(states: [.delivered], limit: nil).filter { $0.confirmation == .pending }.count
        }
        var left = try await pending(), idle = 0
        while left > 0 {
            let pass = try await pipeline.checkConfirmations(limit: 1000)
            let now = try await pending()
            idle = now < left ? 0 : idle + 1
            if idle == 50 {
                Issue.record("50 rounds without a new answer; \(now) rows still wait, last round: \(pass)")
                return
            }
            left = now
        }
    }
}

/// The claims of a Security Event Token a test looks at.
struct Claims {
    let submission: String
    let event: String

    init?(_ token: String) {
        let segments = token.split(separator: ".")
        guard segments.count == 3, let data = Base64URL.decode(segments[1]),
              let claims = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let subject = claims["sub"] as? String, let events = claims["events"] as? [String: Any],
              let event = events.keys.first else { return nil }
        submission = String(subject.dropFirst("submission:".count))
        self.event = event
    }
}

/// Fails the first call for each submission id, as a crash between create and submit would.
actor FailOnce {
    private var seen: Set<String> = []
    var count: Int { seen.count }

    func first(_ id: String) throws {
        if seen.insert(id).inserted { throw PostfachError(code: .unavailable, message: "crash between create and submit") }
    }
}

/// Delivers until every row of the ledger is final: a worker that drains would stop while rows wait for a retry
/// (a 429's Retry-After), so the worker runs until the ledger says everything is decided.
func deliverUntilFinal(_ pipeline: Pipeline, concurrency: Int) async throws -> DeliveryWorker.Summary {
    let stop = StopSignal()
    let worker = Task { try await DeliveryWorker(pipeline: pipeline, concurrency: concurrency, poll: .milliseconds(50)).run(until: stop) }
    // Guarded against a hang, not against slowness: each wait is for one more decision.
    func decided() async throws -> (done: Int, total: Int) {
        let counts = try await pipeline.ledger.counts()
        return (counts.filter { $0.key.isFinal }.map(\.value).reduce(0, +), counts.values.reduce(0, +))
    }
    var progress = try await decided()
    while progress.done < progress.total {
        let before = progress.done
        try await waitUntil("another submission is decided (\(before) of \(progress.total) so far)") {
            progress = try await decided()
            return progress.done > before
        }
    }
    stop.stop()
    return try await worker.value
}

/// A pipeline over `backend` in `directory` (SQLite ledger, no delivery on intake) with `count` sample
/// submissions recorded and queued, each with its own message id.
func queuedPipeline(_ backend: any PostfachBackend, count: Int, in directory: URL) async throws -> (Pipeline, SQLiteLedger) {
    let ledger = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
    let pipeline = Pipeline(validator: Harness.validator, router: Harness.router, backends: BackendSelection(default: backend),
                            ledger: ledger, spool: try Spool(directory: directory.appendingPathComponent("spool")),
                            retry: RetryPolicy(maxAttempts: 100, initialDelay: .milliseconds(5), maxDelay: .milliseconds(100),
                                               confirmationCheck: .zero),
                            deliversOnIntake: false)
    let inbox = directory.appendingPathComponent("inbox")
    try FileManager.default.createDirectory(at: inbox, withIntermediateDirectories: true)
    try SampleSubmissions.write(count: count, into: inbox)
    for n in 0..<count {
        let row = try await pipeline.submit(file: inbox.appendingPathComponent(String(format: "antrag-%05d.xml", n)).path)
        #expect(row.state == .queued, "\(row.reasonCode ?? "")")
    }
    return (pipeline, ledger)
}
