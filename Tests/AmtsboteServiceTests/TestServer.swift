import AmtsbotePipeline
import AmtsbotePostgres
@testable import AmtsboteService
import AmtsboteTestSupport
import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Postfach
import Prometheus
import ServiceLifecycle
import Testing
import XoevRouting
import XoevValidation

/// A live `IntakeService` on 127.0.0.1 (a free port), over an SQLite ledger in a temporary folder (or a given
/// PostgreSQL ledger), delivering into
/// an in-memory Postfach with in-process workers, and an HTTP client for it.
final class TestServer: Sendable {
    let directory: URL
    let ledger: any LedgerStore
    let backend: InMemoryBackend
    let pipeline: Pipeline
    let port: Int
    let group: ServiceGroup
    let running: Task<Void, any Error>

    /// swift-metrics allows one backend per process: every test server reports into this registry.
    static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    static let validator: Validator = {
        do { return Validator(schemas: try SchemaSet(manifestAt: TestEnvironment.projectRoot.appendingPathComponent("Schemas").path)) }
        catch { fatalError("\(error)") }
    }()

    static let router: XoevRouting.Router = {
        let routing = TestEnvironment.projectRoot.appendingPathComponent("Samples/routing")
        do {
            let directory = try MunicipalityDirectory(csv: routing.appendingPathComponent("gemeinden_ags_ars_2026-04-30.csv").path,
                                                      retiredKeys: routing.appendingPathComponent("ags-retired-since-2011.txt").path)
            return try XoevRouting.Router(tables: [RoutingTable(file: routing.appendingPathComponent("routing-2026-04-30.tsv").path,
                                                                directory: directory)], directory: directory)
        } catch { fatalError("\(error)") }
    }()

    /// Starts a server; `workers` 0: nothing is delivered (the queue only grows).
    init(workers: Int = 2, logger: Logger = Logger(label: "amtsbote.http"), postgres: PostgresLedger? = nil,
         backend: InMemoryBackend = InMemoryBackend(),
         configure: (inout IntakeServiceConfiguration) throws -> Void = { _ in }) async throws {
        directory = try TestEnvironment.temporaryDirectory()
        let payloads: any PayloadStore
        if let postgres {
            ledger = postgres
            payloads = try PostgresPayloadStore(ledger: postgres, scratch: directory.appendingPathComponent("scratch"))
        } else {
            let sqlite = try SQLiteLedger(path: directory.appendingPathComponent("ledger.sqlite").path)
            ledger = sqlite
            payloads = SQLitePayloadStore(ledger: sqlite, scratch: directory.appendingPathComponent("spool"))
        }
        self.backend = backend
        pipeline = Pipeline(validator: Self.validator, router: Self.router, backends: BackendSelection(default: backend),
                            ledger: ledger, spool: try Spool(directory: directory.appendingPathComponent("spool")),
                            payloads: payloads,
                            retry: RetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(10)), deliversOnIntake: false)
        var configuration = IntakeServiceConfiguration(listen: ListenAddress(host: "127.0.0.1", port: 0),
                                                       depthSampleInterval: .milliseconds(20))
        try configure(&configuration)
        let service = try IntakeService(pipeline: pipeline, configuration: configuration, metrics: Self.registry,
                                        logger: logger)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        var services = try service.services { role, address in
            if role == "api" { continuation.yield(address?.port ?? 0) }
        }
        if workers > 0 {
            services.insert(DeliveryWorkerService(worker: DeliveryWorker(pipeline: pipeline, concurrency: workers,
                                                                         poll: .milliseconds(50))), at: 0)
        }
        let group = ServiceGroup(configuration: .init(services: services, logger: .init(label: "test.server")))
        self.group = group
        running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        port = await iterator.next() ?? 0
    }

    /// Stops as SIGTERM would: no new connections, requests in flight finish, workers end.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await running.value
        await ledger.close()
        try? FileManager.default.removeItem(at: directory)
    }

    var base: String { "http://127.0.0.1:\(port)" }

    struct Answer {
        var status: Int
        var headers: HTTPHeaders
        var body: String
        /// The body as a JSON object.
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        }
    }

    /// POSTs `body` (a sample file's name under Samples, or XML text) to /v1/submissions.
    func post(_ body: Data, contentType: String = "application/xml", query: String = "", token: String? = nil,
              headers: [(String, String)] = []) async throws -> Answer {
        var request = HTTPClientRequest(url: base + "/v1/submissions" + query)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: contentType)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(data: body))
        return try await send(request)
    }

    func get(_ path: String, token: String? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: base + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        return try await send(request)
    }

    func send(_ request: HTTPClientRequest) async throws -> Answer {
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 16 << 20)
        return Answer(status: Int(response.status.code), headers: response.headers, body: String(buffer: body))
    }

    static func sample(_ name: String) throws -> Data {
        try Data(contentsOf: TestEnvironment.projectRoot.appendingPathComponent("Samples").appendingPathComponent(name))
    }
}

/// SHA-256 hex of a token, as the configuration holds it.
func tokenHash(_ token: String) -> String {
    var hasher = Crypto.SHA256()
    hasher.update(data: Data(token.utf8))
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

/// Log lines written through a logger made with ``logger``, kept for a test to read.
final class CapturedLog: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var entries: [String] = []

    var lines: [String] {
        lock.lock(); defer { lock.unlock() }
        return entries
    }

    func append(_ line: String) {
        lock.lock(); defer { lock.unlock() }
        entries.append(line)
    }

    var logger: Logger {
        var logger = Logger(label: "amtsbote.http") { _ in Handler(log: self) }
        logger.logLevel = .info
        return logger
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            let fields = self.metadata.merging(metadata ?? [:]) { $1 }.sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            log.append("\(level) \(message) \(fields)")
        }
    }
}
