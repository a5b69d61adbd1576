import AmtsbotePipeline
import AmtsboteService
import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import XoevReports

/// `amtsbote serve`: the HTTP intake service with in-process delivery workers.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the HTTP intake service: portals POST submissions, the service validates, routes and delivers.",
        discussion: """
        POST /v1/submissions (application/xml), GET /v1/submissions/{id}, GET /healthz, /readyz, /metrics;
        Docs/service.md and Docs/openapi.yaml describe the API. Without --config it runs on the embedded default
        (as submit does) and listens on loopback only, without authentication; clients with bearer tokens are
        configured in the configuration's "service" section. SIGTERM or SIGINT: stop accepting, finish the
        requests in flight, let the deliveries in flight end and be recorded, exit 0.

        EXIT CODES: 0 stopped, 2 configuration error (or the address is taken), 6 ledger unreachable at start.
        """)

    @Option(name: .long, help: "Listen address HOST:PORT (default: the configuration's service.listen, else 127.0.0.1:8080).")
    var listen: String?

    @Option(name: .long, help: "In-process delivery workers: deliveries in flight (default: service.workers, else 4; 0 when amtsbote worker processes deliver).")
    var workers: Int?

    @OptionGroup var options: PipelineOptions

    func validate() throws {
        if let workers, workers < 0 { throw ValidationError("--workers must not be negative") }
        if let listen { _ = try ListenAddress(parsing: listen) }
    }

    func run() async throws {
        // Signals count from the very start (ServiceGroup's own handling would begin only once it runs).
        let shutdown = ShutdownControl()
        let loaded = try await options.load(.service, requestLog: true, until: shutdown.stop)
        guard let pipeline = loaded.pipeline else { throw ExitCode(ExitStatus.usage.rawValue) }
        let settings = loaded.service
        var services: [any Service]
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        do {
            let configuration = try Self.configuration(settings, listen: listen,
                                                       defaultMaxBody: pipeline.validator.limits.maxBytes)
            let service = try IntakeService(pipeline: pipeline, configuration: configuration, metrics: registry)
            services = try service.services { role, address in
                // The bound address on standard output: with port 0 a caller learns which port was picked.
                var out = StandardOutput()
                out.append("serve: \(role) listening on \(address.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?")\n")
                out.flush()
            }
        } catch {
            FileHandle.standardError.write(Data("amtsbote: configuration error: \(error)\n".utf8))
            await pipeline.close()
            throw ExitCode(ExitStatus.usage.rawValue)
        }
        let logger = Logger(label: "amtsbote.serve")
        let stop = shutdown.stop
        // Intakes a previous run left unfinished, and rows of workers that are gone, before the first request.
        do {
            try await pipeline.recoverWaitingForLedger(poll: .seconds(1), until: stop)
        } catch {
            await pipeline.close()
            throw error
        }
        let concurrency = workers ?? settings?.workers ?? 4
        if concurrency > 0 {
            // Stopped by the group's graceful shutdown, after the listener has drained (services stop in reverse).
            services.insert(DeliveryWorkerService(worker: DeliveryWorker(pipeline: pipeline, concurrency: concurrency)),
                            at: 0)
        }
        if stop.isStopped {  // signalled during start-up: nothing was accepted yet
            await pipeline.close()
            return
        }
        let group = ServiceGroup(configuration: .init(services: services, logger: logger))
        shutdown.onFirstSignal { Task { await group.triggerGracefulShutdown() } }
        let running = Task { try await group.run() }
        shutdown.onSecondSignal { running.cancel() }
        do {
            try await running.value
        } catch {
            FileHandle.standardError.write(Data("amtsbote: serve: \(error)\n".utf8))
            await pipeline.close()
            throw ExitCode(ExitStatus.usage.rawValue)
        }
        await pipeline.close()
    }

    /// The service settings from the configuration's `service` section and the flags.
    static func configuration(_ settings: AmtsboteConfiguration.Service?, listen: String?,
                              defaultMaxBody: Int64) throws -> IntakeServiceConfiguration {
        var configuration = IntakeServiceConfiguration()
        if let text = listen ?? settings?.listen { configuration.listen = try ListenAddress(parsing: text) }
        if let text = settings?.metricsListen { configuration.metricsListen = try ListenAddress(parsing: text) }
        configuration.maxBodyBytes = settings?.maxBodyBytes ?? (defaultMaxBody > 0 ? defaultMaxBody : configuration.maxBodyBytes)
        if let value = settings?.maxQueueDepth { configuration.maxQueueDepth = value }
        if let value = settings?.maxConcurrentIntakes { configuration.maxConcurrentIntakes = value }
        if let value = settings?.idleTimeoutSeconds { configuration.idleTimeout = .milliseconds(Int64(value * 1000)) }
        if let value = settings?.retryAfterSeconds { configuration.retryAfterSeconds = value }
        if let hours = settings?.idempotencyKeyRetentionHours {
            configuration.idempotencyKeyRetention = .seconds(Int64(hours * 3600))
        }
        configuration.clients = try (settings?.clients ?? [:]).sorted { $0.key < $1.key }.map { name, client in
            try ServiceClient(name: name, tokenSHA256: client.tokenSHA256, certificateSHA256: client.certificateSHA256 ?? [],
                              schemas: client.schemas.map(Set.init),
                              postfaecher: client.postfaecher.map(Set.init))
        }
        configuration.tls = settings?.tls.map {
            ServiceTLS(certificateChainFile: $0.certificate, privateKeyFile: $0.privateKey,
                       clientCertificateAuthorities: $0.clientCertificateAuthorities,
                       requireClientCertificate: $0.requireClientCertificate ?? false)
        }
        return configuration
    }
}
