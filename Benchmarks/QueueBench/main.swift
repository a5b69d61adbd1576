// The delivery queue under load (run by scripts/bench-queue): deliveries per second with 1, 2, 4 and 8 workers,
// batched and single-row claims, and the wake-up latency from queuing to claiming, on PostgreSQL and on SQLite.
// The backend and the payload store do nothing, so what is measured is the ledger: claim, record, notify.
import AmtsbotePipeline
import AmtsbotePostgres
import Foundation
import Logging
import Postfach
import PostgresNIO
import XoevRouting
import XoevValidation

struct NoOpBackend: PostfachBackend {
    let kind = "noop"
    let claimed: Stamps?
    func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        claimed?.stamp(delivery.id)
        return Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind, location: "noop",
                       deliveredAt: Date(), payloadSHA256: delivery.payloadSHA256, alreadyPresent: false)
    }
}

struct NoPayloads: PayloadStore {
    let file: URL
    func keep(spooled file: URL, submission: Int64) async throws -> String { file.path }
    func withLocalFile<T: Sendable>(_ location: String, _ body: (URL) async throws -> T) async throws -> T { try await body(file) }
    func remove(_ location: String) async throws {}
    func removeIncomplete(submission: Int64) async throws {}
}

/// When each delivery id was first seen by the backend.
final class Stamps: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [String: ContinuousClock.Instant] = [:]
    func stamp(_ id: String) { lock.lock(); if seen[id] == nil { seen[id] = .now }; lock.unlock() }
    func at(_ id: String) -> ContinuousClock.Instant? { lock.lock(); defer { lock.unlock() }; return seen[id] }
}

let arguments = CommandLine.arguments
func option(_ name: String) -> String? { arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }
let total = Int(option("--deliveries") ?? "") ?? 100_000
let workerCounts = (option("--workers") ?? "1,2,4,8").split(separator: ",").compactMap { Int($0) }
let samples = Int(option("--latency-samples") ?? "") ?? 300
let engine = option("--engine") ?? "postgres"
let concurrency = Int(option("--concurrency") ?? "") ?? 64
let parallelClaims = Int(option("--parallel-claims") ?? "") ?? 8
let claimModes: [Bool] = { switch option("--claims") { case "batched": [true]; case "single": [false]; default: [true, false] } }()

let logger: Logger = {
    var logger = Logger(label: "amtsbote.bench")
    logger.logLevel = .error
    return logger
}()
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .error
    return handler
}
let root = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
let validator = Validator(schemas: try SchemaSet(manifestAt: root.appendingPathComponent("Schemas").path))
let routing = root.appendingPathComponent("Samples/routing")
let directory = try MunicipalityDirectory(csv: routing.appendingPathComponent("gemeinden_ags_ars_2026-04-30.csv").path)
let router = try Router(tables: [RoutingTable(file: routing.appendingPathComponent("routing-2026-04-30.tsv").path,
                                              directory: directory)], directory: directory)
let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("amtsbote-queue-bench-\(UUID().uuidString)")
try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: work) }
let payload = work.appendingPathComponent("payload.xml")
try Data("<a/>".utf8).write(to: payload)

/// Opens one ledger per worker, as separate processes would.
var openLedger: @Sendable () async throws -> any LedgerStore
var reset: @Sendable () async throws -> Void
if engine == "postgres" {
    guard let url = option("--url") else { print("--url postgres://USER@HOST:PORT/DB required (password: --password-file)"); exit(2) }
    let password = try option("--password-file").map { try String(contentsOfFile: $0, encoding: .utf8).trimmingCharacters(in: .newlines) }
    var configuration = try PostgresLedgerConfiguration(url: url, password: password)
    configuration.maximumConnections = concurrency + 2
    if let interval = option("--outcome-interval-ms").flatMap(Int.init) { configuration.outcomeBatchInterval = .milliseconds(interval) }
    let settings = configuration
    openLedger = { try await PostgresLedger.open(settings, logger: logger) }
    reset = {
        let ledger = try await PostgresLedger.open(settings, logger: logger)
        try await ledger.client.query("TRUNCATE submission, delivery_claim, payload_chunk RESTART IDENTITY", logger: logger)
        await ledger.close()
    }
} else {
    let path = work.appendingPathComponent("ledger.sqlite").path
    openLedger = { try SQLiteLedger(path: path) }
    reset = { try? FileManager.default.removeItem(atPath: path) }
}

/// Records one delivery and queues it through the intake path (with its notification).
func queue(_ deliveryId: String, on ledger: any LedgerStore) async throws {
    var row = try await ledger.recordReceived(source: "bench", at: Date())
    row.state = .validated
    row.deliveryId = deliveryId
    row.postfach = "bench"
    row.payloadLocation = "noop"
    row.payloadSHA256 = "hash"
    row.payloadSize = 4
    _ = try await ledger.update(row, from: .received)
    _ = try await ledger.claimAndQueue(row, leaseFor: nil)
}

/// Queues `count` deliveries directly (one transaction per 1,000), due now.
func fill(_ count: Int) async throws {
    let ledger = try await openLedger()
    if let postgres = ledger as? PostgresLedger {
        var done = 0
        while done < count {
            let n = min(1000, count - done)
            try await postgres.client.query("""
                INSERT INTO submission (source, received_at, updated_at, state, payload_location, payload_sha256,
                    payload_size, delivery_id, postfach, next_attempt_at)
                SELECT 'bench', now(), now(), 'queued', 'noop', 'hash', 4, 'bench-' || g, 'bench', now()
                FROM generate_series(\(done), \(done + n - 1)) g
                """, logger: logger)
            done += n
        }
    } else {
        for n in 0..<count { try await queue("bench-\(n)", on: ledger) }
    }
    await ledger.close()
}

func pipeline(_ ledger: any LedgerStore, stamps: Stamps? = nil) -> Pipeline {
    Pipeline(validator: validator, router: router, backends: BackendSelection(default: NoOpBackend(claimed: stamps)),
             ledger: ledger, spool: try! Spool(directory: work.appendingPathComponent("spool")),
             payloads: NoPayloads(file: payload), retry: RetryPolicy(heartbeat: nil), deliversOnIntake: false, logger: logger)
}

print("engine: \(engine), \(total) deliveries per run, \(concurrency) in flight per worker, "
      + "\(parallelClaims) single-row claims side by side")
print("| workers | claims | deliveries/s |")
print("|---|---|---|")
for batched in claimModes {
    for workers in workerCounts {
        try await reset()
        try await fill(total)
        let ledgers = try await (0..<workers).asyncMap { _ in try await openLedger() }
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for ledger in ledgers {
                group.addTask {
                    let summary = try await DeliveryWorker(pipeline: pipeline(ledger), concurrency: concurrency,
                                                 batchSize: batched ? concurrency : 1, parallelClaims: parallelClaims,
                                                 poll: .milliseconds(500),
                                                 drain: true).run()
                    if arguments.contains("--verbose") {
                        print("  worker: \(summary.attempts) attempts, done after \(ContinuousClock.now - started)")
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        let counts = try await ledgers[0].counts()
        guard counts[.delivered] == total else { print("not all delivered: \(counts)"); exit(1) }
        for ledger in ledgers { await ledger.close() }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("| \(workers) | \(batched ? "batched (\(concurrency))" : "single-row") | \(Int(Double(total) / seconds)) |")
    }
}

// Wake-up latency: idle workers (poll 5 s, so only a notification explains a quick claim), one delivery queued
// at a time through the intake path, time from its commit to the backend's call.
try await reset()
let stamps = Stamps()
let ledgers = try await (0..<2).asyncMap { _ in try await openLedger() }
let stop = StopSignal()
let runners = ledgers.map { ledger in
    Task { try await DeliveryWorker(pipeline: pipeline(ledger, stamps: stamps), concurrency: 4, poll: .seconds(5)).run(until: stop) }
}
for ledger in ledgers { await ledger.waitForWork(upTo: .milliseconds(200)) }  // LISTEN connections up
let producer = try await openLedger()
var latencies: [Double] = []
for n in 0..<samples {
    try await queue("latency-\(n)", on: producer)
    let queued = ContinuousClock.now
    while stamps.at("latency-\(n)") == nil {
        if ContinuousClock.now - queued > .seconds(30) { print("latency sample \(n) not claimed within 30 s"); exit(1) }
        try await Task.sleep(for: .microseconds(200))
    }
    let waited = stamps.at("latency-\(n)")! - queued
    latencies.append(Double(waited.components.seconds) * 1000 + Double(waited.components.attoseconds) / 1e15)
    try await Task.sleep(for: .milliseconds(Int64.random(in: 5...25)))
}
stop.stop()
for runner in runners { _ = try await runner.value }
for ledger in ledgers + [producer] { await ledger.close() }
let sorted = latencies.sorted()
func percentile(_ values: [Double], _ p: Double) -> Double { values[min(values.count - 1, Int(Double(values.count) * p))] }
print(String(format: "enqueue-to-claim latency over %d samples (2 idle workers, poll 5 s): p50 %.1f ms, p99 %.1f ms, max %.1f ms",
             samples, percentile(sorted, 0.5), percentile(sorted, 0.99), sorted.last ?? 0))

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
