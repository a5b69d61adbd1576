import AmtsbotePipeline
import Foundation
import Hummingbird
import HTTPTypes
import Logging
import Metrics
import NIOCore
import NIOSSL
import HummingbirdCore
import HummingbirdTLS
import Prometheus
import ServiceLifecycle
import XoevReports

/// `amtsbote serve`: the HTTP intake service in front of a ``Pipeline``.
///
/// Routes: `POST /v1/submissions`, `GET /v1/submissions/{id}`, `GET /v1/problems/{code}`, `GET /healthz`,
/// `GET /readyz`, `GET /metrics` (Docs/service.md, Docs/openapi.yaml). Run ``services`` in one `ServiceGroup`
/// with the delivery workers: on SIGTERM the listener stops accepting, requests in flight finish, then the rest.
public struct IntakeService: Sendable {
    public let pipeline: Pipeline
    public let configuration: IntakeServiceConfiguration
    /// Where `/metrics` reads from: the registry behind the process's metrics factory.
    public let metrics: PrometheusCollectorRegistry
    let logger: Logger
    let queue: QueueGauge

    public init(pipeline: Pipeline, configuration: IntakeServiceConfiguration, metrics: PrometheusCollectorRegistry,
                logger: Logger = Logger(label: "amtsbote.http")) throws {
        try configuration.check()
        self.pipeline = pipeline
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        queue = QueueGauge(ledger: pipeline.ledger, interval: configuration.depthSampleInterval, logger: logger)
    }

    /// The services to run: the queue reader, the API listener and, when configured apart, the metrics listener.
    /// `onListening` is told each listener's bound address (port 0 picks one).
    /// Throws ``ServiceConfigurationError`` when the TLS certificate, key or authorities cannot be read.
    public func services(onListening: @escaping @Sendable (_ role: String, _ address: SocketAddress?) async -> Void = { _, _ in })
        throws -> [any Service] {
        var services: [any Service] = [queue, KeyJanitor(ledger: pipeline.ledger, keep: configuration.idempotencyKeyRetention,
                                                         logger: logger),
                                       try application(onListening: onListening)]
        if let metricsListen = configuration.metricsListen {
            let router = Router(context: BasicRequestContext.self)
            let registry = metrics
            router.get("/metrics") { _, _ in Self.metricsResponse(registry) }
            services.append(Application(router: router,
                                        configuration: .init(address: .hostname(metricsListen.host, port: metricsListen.port),
                                                             serverName: nil),
                                        onServerRunning: { await onListening("metrics", $0.localAddress) },
                                        logger: Logger(label: "amtsbote.metrics")))
        }
        return services
    }

    func application(onListening: @escaping @Sendable (String, SocketAddress?) async -> Void) throws -> some Service {
        let router = Router(context: IntakeRequestContext.self)
        router.add(middleware: RequestLog(logger: logger))
        router.add(middleware: ClientAuthentication(clients: configuration.clients,
                                                    open: ["/healthz", "/readyz", "/metrics"]))
        let routes = SubmissionRoutes(pipeline: pipeline, configuration: configuration, queue: queue,
                                      slots: IntakeSlots(limit: configuration.maxConcurrentIntakes), logger: logger)
        let queue = queue
        for route in Self.routes {
            let path = RouterPath(route.path.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: ""))
            switch (route.method, route.path) {
            case ("POST", "/v1/submissions"):
                router.post(path) { request, context in try await routes.submit(request, context: context) }
            case ("GET", "/v1/submissions/{id}"):
                router.get(path) { request, context in try await routes.status(request, context: context) }
            case ("GET", "/v1/problems/{code}"):
                router.get(path) { request, context in Self.explain(request, context: context) }
            case ("GET", "/healthz"):
                router.get(path) { _, _ in Self.json(.ok, ["status": .string("alive")]) }
            case ("GET", "/readyz"):
                router.get(path) { _, _ in
                    // Ready once the schemas are compiled (they are before the service starts) and the ledger answers.
                    if !queue.ledgerAnswers { await queue.sample() }
                    guard queue.ledgerAnswers else {
                        return Problem(.serviceUnavailable, "ledger.unavailable", "the ledger does not answer")
                            .response(instance: "/readyz")
                    }
                    return Self.json(.ok, ["status": .string("ready")])
                }
            case ("GET", "/metrics"):
                let registry = metrics
                router.get(path) { _, _ in Self.metricsResponse(registry) }
            default:
                preconditionFailure("no handler for \(route.method) \(route.path)")
            }
        }
        let listen = configuration.listen
        var server = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .nanoseconds(Int64(configuration.idleTimeout.nanoseconds))))
        if let tls = configuration.tls { server = try .tls(server, tlsConfiguration: Self.tlsConfiguration(tls)) }
        return Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: nil),
            onServerRunning: { await onListening("api", $0.localAddress) },
            logger: logger)
    }

    /// The server side of TLS: TLS 1.2 at least; client certificates asked for (and verified against the configured
    /// authorities) when authorities are configured, required when so configured.
    static func tlsConfiguration(_ tls: ServiceTLS) throws -> TLSConfiguration {
        func read<T>(_ file: String, _ what: String, _ load: (String) throws -> T) throws -> T {
            guard FileManager.default.isReadableFile(atPath: file) else {
                throw ServiceConfigurationError("\(file): cannot read the \(what)")
            }
            do { return try load(file) } catch {
                throw ServiceConfigurationError("\(file): not a PEM \(what) (\(error))")
            }
        }
        let chain = try read(tls.certificateChainFile, "certificate chain") { try NIOSSLCertificate.fromPEMFile($0) }
        guard !chain.isEmpty else { throw ServiceConfigurationError("\(tls.certificateChainFile): no certificate in it") }
        let key = try read(tls.privateKeyFile, "private key") { try NIOSSLPrivateKey(file: $0, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if let authorities = tls.clientCertificateAuthorities {
            let roots = try read(authorities, "client certificate authorities") { try NIOSSLCertificate.fromPEMFile($0) }
            guard !roots.isEmpty else { throw ServiceConfigurationError("\(authorities): no certificate in it") }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = tls.requireClientCertificate ? .noHostnameVerification : .optionalVerification
        }
        return configuration
    }

    /// Every route of the API, as Docs/openapi.yaml describes them (a test keeps the two in step). `/metrics` is
    /// also served on ``IntakeServiceConfiguration/metricsListen`` when that is set.
    public static let routes: [(method: String, path: String)] = [
        ("POST", "/v1/submissions"), ("GET", "/v1/submissions/{id}"), ("GET", "/v1/problems/{code}"),
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
    ]

    static func json(_ status: HTTPResponse.Status, _ members: [String: JSONValue]) -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: JSONValue.object(members).text)))
    }

    static func metricsResponse(_ registry: PrometheusCollectorRegistry) -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
    }

    /// `GET /v1/problems/{code}`: what a problem type means and how to fix it.
    static func explain(_ request: Request, context: IntakeRequestContext) -> Response {
        guard let code = context.parameters.get("code"),
              let entry = DiagnosticCatalog.entries.first(where: { $0.code == code }) else {
            context.codes.note("service.not-found")
            return Problem(.notFound, "service.not-found", "no such problem type").response(instance: request.uri.path)
        }
        return json(.ok, ["code": .string(entry.code), "section": .string(entry.section),
                          "meaning": .string(entry.meaning), "fix": .string(entry.fix)])
    }
}

/// One log line per request (request id, client, method, route, status, codes, duration), and the request
/// metrics. Never a header value, a query value or a byte of the body.
struct RequestLog: RouterMiddleware {
    typealias Context = IntakeRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var status: HTTPResponse.Status = .internalServerError
        defer {
            let elapsed = ContinuousClock.now - start
            let route = context.endpointPath ?? "unmatched"
            let codes = context.codes.all
            logger.info("request", metadata: [
                "request": "\(context.id)", "client": "\(context.codes.client)", "method": "\(request.method.rawValue)",
                "route": "\(route)", "status": "\(status.code)",
                "codes": "\(codes.joined(separator: ","))",
                "ms": "\(Double(elapsed.nanoseconds / 1000) / 1000)",
            ])
            Counter(label: "amtsbote_http_requests_total",
                    dimensions: [("route", route), ("method", request.method.rawValue), ("status", String(status.code))])
                .increment()
            Metrics.Timer(label: "amtsbote_http_request_duration_seconds", dimensions: [("route", route)],
                          preferredDisplayUnit: .seconds)
                .recordNanoseconds(elapsed.nanoseconds)
        }
        let response = try await next(request, context)
        status = response.status
        return response
    }
}

/// Forgets idempotency keys older than their retention, at start and every hour.
struct KeyJanitor: Service {
    let ledger: any LedgerStore
    let keep: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let purged = try await ledger.purgeIdempotencyKeys(completedBefore: Date().addingTimeInterval(-Double(keep.components.seconds)))
                if purged > 0 { logger.info("idempotency keys purged", metadata: ["count": "\(purged)"]) }
            } catch {
                logger.warning("idempotency keys not purged", metadata: ["code": "\((error as? LedgerError)?.code ?? "ledger.unavailable")"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
        }
    }
}
