import AmtsbotePostgres
import AmtsbotePipeline
import ArgumentParser
import Foundation
import Logging
import Postfach
import PostfachFITConnect
import PostfachHTTP
import XoevRouting
import XoevTransform
import XoevValidation

/// The configuration file of `submit`, `route`, `deliveries` and `retry` (Docs/configuration.md). Paths are
/// relative to the file's folder; without a file the embedded default applies, relative to the working folder.
struct AmtsboteConfiguration: Codable {
    struct Routing: Codable {
        /// Routing table files, or folders whose `*.tsv` files are tables.
        var tables: [String]
        var municipalities: String?
        var retiredKeys: String?
        /// A text file of known DVDV prefixes, one per line.
        var dvdvPrefixes: String?
    }

    struct Backend: Codable {
        var kind: String
        var parameters: [String: String]?

        init(kind: String, parameters: [String: String]? = nil) {
            self.kind = kind
            self.parameters = parameters
        }

        enum CodingKeys: String, CodingKey { case kind }

        init(from decoder: any Decoder) throws {
            kind = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .kind)
            // Every other key is a parameter of the backend.
            let all = try decoder.singleValueContainer().decode([String: JSONScalar].self)
            parameters = all.filter { $0.key != "kind" }.mapValues(\.text)
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode((parameters ?? [:]).merging(["kind": kind]) { a, _ in a })
        }
    }

    struct Postfaecher: Codable {
        var `default`: String
        var overrides: [String: String]?
    }

    struct Retry: Codable {
        var maxAttempts: Int?
        var initialDelaySeconds: Double?
        var multiplier: Double?
        var maxDelaySeconds: Double?
        var attemptTimeoutSeconds: Double?
        /// How long a claimed delivery stays leased without a heartbeat (default 30).
        var leaseSeconds: Double?
        /// How often a running delivery extends its lease (default a third of the lease; 0: never).
        var heartbeatSeconds: Double?
        /// How long after a delivery, and between checks, a receiver that answers later is asked (default 300).
        var confirmationCheckSeconds: Double?
        /// How long after a delivery the receiver may take to answer before the row is marked overdue (default 30 days).
        var confirmationDeadlineSeconds: Double?
    }

    var format: String?
    var schemas: String?
    /// Folders of genericode code lists (default: the schema set's `codelists` folder).
    var codeLists: [String]?
    /// A code whose list is not loaded: ignore, warning (default) or error.
    var missingCodeLists: String?
    var routing: Routing
    var backends: [String: Backend]
    var postfaecher: Postfaecher
    var ledger: LedgerSetting
    var spool: String
    var retry: Retry?
    /// How long payloads of finished submissions are kept, by final state ("7d", "30d", "12h").
    var retention: [String: String]?
    /// `amtsbote serve`: listener, clients, limits (Docs/service.md).
    var service: Service?
    /// Transformations between routing and delivery, first match wins (Docs/transform.md).
    var transformations: [Transformation]?

    struct Transformation: Codable {
        var name: String?
        /// The Postfach the rule applies to; nil: every Postfach.
        var postfach: String?
        /// The schema id of the payload; nil: every schema.
        var schema: String?
        /// XSLT 1.0 stylesheets, run in order; paths relative to the configuration file.
        var stylesheets: [String]
        /// An XSD the output must be valid against; relative to the configuration file.
        var targetSchema: String?
        var timeoutSeconds: Double?
        var maxOutputBytes: Int64?
    }

    struct Service: Codable {
        struct Client: Codable {
            var tokenSHA256: String?
            /// SHA-256 fingerprints of the client certificates that stand for this client (mTLS).
            var certificateSHA256: [String]?
            var schemas: [String]?
            var postfaecher: [String]?
        }
        /// HTTPS, and client certificates (mTLS); paths relative to the configuration file.
        struct TLS: Codable {
            var certificate: String
            var privateKey: String
            var clientCertificateAuthorities: String?
            var requireClientCertificate: Bool?
        }
        var listen: String?
        var metricsListen: String?
        /// In-process delivery workers (deliveries in flight); 0 when `amtsbote worker` processes deliver.
        var workers: Int?
        var maxBodyBytes: Int64?
        var maxQueueDepth: Int?
        var maxConcurrentIntakes: Int?
        /// Bodies of at most this many bytes are held in memory and kept in the ledger (no spool file); 0: never.
        var payloadInMemoryBytes: Int?
        var idleTimeoutSeconds: Double?
        var retryAfterSeconds: Int?
        var idempotencyKeyRetentionHours: Double?
        var clients: [String: Client]?
        var tls: TLS?
    }

    /// Works out of the box from the project folder: Samples' routing, Postfächer, ledger and spool under `data`.
    /// The embedded default: the sample routing (from the working folder, else beside the installation) and
    /// everything else under `data`.
    static func embeddedDefault(data: String) throws -> AmtsboteConfiguration {
        guard let routing = Installation.find("Samples/routing", containing: "gemeinden_ags_ars_2026-04-30.csv")?.path else {
            throw ConfigurationError("""
                the embedded default's routing (Samples/routing) was found neither in the working folder nor beside \
                the installation; pass --config FILE naming your routing tables (Docs/configuration.md)
                """)
        }
        return AmtsboteConfiguration(
            format: "amtsbote-config/1",
            schemas: nil,
            codeLists: nil,
            missingCodeLists: nil,
            routing: Routing(tables: [routing], municipalities: routing + "/gemeinden_ags_ars_2026-04-30.csv",
                             retiredKeys: routing + "/ags-retired-since-2011.txt", dvdvPrefixes: nil),
            backends: ["local": Backend(kind: "filesystem", parameters: ["directory": data + "/postfach"])],
            postfaecher: Postfaecher(default: "local", overrides: nil),
            ledger: .sqlite(path: data + "/ledger.sqlite"),
            spool: data + "/spool",
            retry: nil,
            retention: nil,
            service: nil,
            transformations: sampleTransformation.map { [$0] })
    }

    /// The embedded default's sample transformation: Köln's Postfach receives a Wohnsitz-Anmeldung in the
    /// (fictitious) Meldewesen import format (Docs/transform.md). Left out where the schema set beside the
    /// installation does not carry the stylesheet.
    private static var sampleTransformation: Transformation? {
        guard let schemas = Installation.find("Schemas", containing: "transform/wohnsitz-meldewesen-import.xsl")?.path else {
            return nil
        }
        return Transformation(name: "meldewesen-import", postfach: "gemeinde-05315000-koeln", schema: "wohnsitz.anmeldung-1.0",
                              stylesheets: [schemas + "/transform/wohnsitz-meldewesen-import.xsl"],
                              targetSchema: schemas + "/fachverfahren/meldewesen-import.xsd",
                              timeoutSeconds: 10, maxOutputBytes: nil)
    }
}

/// A JSON string, number or boolean read as text (backend parameters).
struct JSONScalar: Codable {
    let text: String
    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self) { text = string }
        else if let bool = try? container.decode(Bool.self) { text = String(bool) }
        else if let number = try? container.decode(Double.self) {
            text = number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        }
        else { text = "" }
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}

extension AmtsboteConfiguration {
    /// `service.payloadInMemoryBytes`: 64 KiB unless set; 0 turns it off; at most 256 KiB (one ledger chunk).
    func payloadInMemoryBytes() throws -> Int {
        let value = service?.payloadInMemoryBytes ?? SQLitePayloadStore.defaultInMemoryLimit
        let maximum = SQLitePayloadStore.maximumInMemoryLimit
        guard (0...maximum).contains(value) else {
            throw ConfigurationError("service.payloadInMemoryBytes must be between 0 and \(maximum), not \(value)")
        }
        return value
    }

    /// The keys each object of the file may have; any other key is an error (a typo must not fall back to a default).
    static let knownKeys: [String: Set<String>] = [
        "": ["format", "schemas", "codeLists", "missingCodeLists", "routing", "backends", "postfaecher", "ledger", "spool", "retry",
             "retention", "service", "transformations"],
        "service": ["listen", "metricsListen", "workers", "maxBodyBytes", "maxQueueDepth", "maxConcurrentIntakes",
                    "payloadInMemoryBytes", "idleTimeoutSeconds", "retryAfterSeconds", "idempotencyKeyRetentionHours", "clients", "tls"],
        "retention": Set(SubmissionState.allCases.filter(\.isFinal).map(\.rawValue)),
        "routing": ["tables", "municipalities", "retiredKeys", "dvdvPrefixes"],
        "postfaecher": ["default", "overrides"],
        "retry": ["maxAttempts", "initialDelaySeconds", "multiplier", "maxDelaySeconds", "attemptTimeoutSeconds",
                  "leaseSeconds", "heartbeatSeconds", "confirmationCheckSeconds",
                  "confirmationDeadlineSeconds"],
    ]

    /// Reads and checks a configuration file. Every error names the file, the key path and what is expected.
    static func read(_ path: String) throws -> AmtsboteConfiguration {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigurationError("\(path): cannot be read (\((error as NSError).localizedDescription))")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) else {
            throw ConfigurationError("\(path): not valid JSON")
        }
        guard let top = object as? [String: Any] else { throw ConfigurationError("\(path): expected a JSON object at the top") }
        if let format = top["format"] as? String, format != "amtsbote-config/1" {
            throw ConfigurationError("\(path): unknown format '\(format)' (expected amtsbote-config/1)")
        }
        for (section, keys) in knownKeys {
            guard let fields = section.isEmpty ? top : top[section] as? [String: Any] else { continue }
            if let unknown = fields.keys.filter({ !keys.contains($0) }).sorted().first {
                let place = section.isEmpty ? unknown : "\(section).\(unknown)"
                throw ConfigurationError("\(path): unknown key '\(place)' (known here: \(keys.sorted().joined(separator: ", ")))")
            }
        }
        let configuration: AmtsboteConfiguration
        do {
            configuration = try JSONDecoder().decode(AmtsboteConfiguration.self, from: data)
        } catch let error as DecodingError {
            throw ConfigurationError("\(path): \(describe(error))")
        }
        if let ledger = top["ledger"] as? [String: Any] {
            if let unknown = ledger.keys.filter({ !["sqlite", "postgres"].contains($0) }).sorted().first {
                throw ConfigurationError("\(path): unknown key 'ledger.\(unknown)' (known here: postgres, sqlite)")
            }
            if let postgres = ledger["postgres"] as? [String: Any],
               let unknown = postgres.keys.filter({ !LedgerSetting.knownPostgresKeys.contains($0) }).sorted().first {
                throw ConfigurationError("\(path): unknown key 'ledger.postgres.\(unknown)' (known here: "
                    + LedgerSetting.knownPostgresKeys.sorted().joined(separator: ", ") + ")")
            }
        }
        if let service = top["service"] as? [String: Any] {
            let clientKeys = ["certificateSHA256", "postfaecher", "schemas", "tokenSHA256"]
            for (name, client) in (service["clients"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
                if let unknown = (client as? [String: Any])?.keys.filter({ !clientKeys.contains($0) }).sorted().first {
                    throw ConfigurationError("\(path): unknown key 'service.clients.\(name).\(unknown)' "
                                             + "(known here: \(clientKeys.joined(separator: ", ")))")
                }
            }
            let tlsKeys = ["certificate", "clientCertificateAuthorities", "privateKey", "requireClientCertificate"]
            if let unknown = (service["tls"] as? [String: Any])?.keys.filter({ !tlsKeys.contains($0) }).sorted().first {
                throw ConfigurationError("\(path): unknown key 'service.tls.\(unknown)' "
                                         + "(known here: \(tlsKeys.joined(separator: ", ")))")
            }
        }
        let transformationKeys = ["maxOutputBytes", "name", "postfach", "schema", "stylesheets", "targetSchema", "timeoutSeconds"]
        for (index, rule) in (top["transformations"] as? [Any] ?? []).enumerated() {
            if let unknown = (rule as? [String: Any])?.keys.filter({ !transformationKeys.contains($0) }).sorted().first {
                throw ConfigurationError("\(path): unknown key 'transformations[\(index)].\(unknown)' "
                                         + "(known here: \(transformationKeys.joined(separator: ", ")))")
            }
        }
        for (state, text) in (configuration.retention ?? [:]).sorted(by: { $0.key < $1.key })
        where RetentionPolicy.seconds(of: text) == nil {
            throw ConfigurationError("\(path): key 'retention.\(state)': expected a duration such as 7d, 12h or 30m, found '\(text)'")
        }
        return configuration
    }

    /// The retention periods: the configured ones (checked by ``read(_:)``) over the defaults.
    var retentionPolicy: RetentionPolicy {
        var policy = RetentionPolicy.default
        for (state, text) in retention ?? [:] {
            if let final = SubmissionState(rawValue: state), let seconds = RetentionPolicy.seconds(of: text) {
                policy.periods[final] = seconds
            }
        }
        return policy
    }

    /// "key 'retry.maxAttempts': expected a number" rather than a DecodingError dump.
    static func describe(_ error: DecodingError) -> String {
        func keyPath(_ path: [any CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: ["."])
        }
        func expected(_ type: Any.Type) -> String {
            switch type {
            case is String.Type: "a string"
            case is Int.Type, is Double.Type: "a number"
            case is Bool.Type: "true or false"
            case is [String].Type: "a list of strings"
            default: type is any Collection.Type ? "a list" : "an object"
            }
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing key '\(keyPath(context.codingPath + [key]))'"
        case .typeMismatch(let type, let context):
            return "key '\(keyPath(context.codingPath))': expected \(expected(type))"
        case .valueNotFound(let type, let context):
            return "key '\(keyPath(context.codingPath))': expected \(expected(type)), found null"
        case .dataCorrupted(let context):
            return "key '\(keyPath(context.codingPath))': \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// Options shared by the commands that use the pipeline.
struct PipelineOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file (amtsbote-config/1). Default: the embedded default (Samples routing, amtsbote-data/).")
    var config: String?

    @Option(name: .long, help: "Schema manifest or folder; overrides the configuration.")
    var schemas: String?

    @Option(name: .long, help: "Folder for Postfächer, ledger and spool of the embedded default (default: ./amtsbote-data).")
    var data: String?

    @Option(name: .long, help: "Log level on standard error (default: warning; serve: info, one line per request).")
    var logLevel: String?

    /// Reads the configuration and builds the parts. Configuration errors exit with 2.
    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("unknown log level '\(logLevel)' (trace, debug, info, notice, warning, error, critical)")
        }
        if data != nil && config != nil { throw ValidationError("--data belongs to the embedded default; a configuration file names its own folders") }
    }

    /// Reads the configuration and builds the parts. A ledger that cannot be reached is tried again for
    /// `waitingForLedger` (a worker outlasting a database restart); then it exits with 6.
    /// A `stop` signalled while it waits for the ledger ends the command with exit 0 (nothing was begun).
    func load(_ purpose: LoadedPipeline.Purpose = .delivery, waitingForLedger: Duration = .zero,
              requestLog: Bool = false, until stop: StopSignal? = nil) async throws -> LoadedPipeline {
        LogSetup.bootstrapOnce(level: logLevel.flatMap(Logger.Level.init(rawValue:)) ?? (requestLog ? .info : .warning))
        let deadline = ContinuousClock.now + waitingForLedger
        do {
            while true {
                do {
                    return try await LoadedPipeline(options: self, purpose: purpose)
                } catch let error as LedgerError where error.code == "ledger.unavailable" && ContinuousClock.now < deadline
                                                         && !(stop?.isStopped ?? false) {
                    Logger(label: "amtsbote.config").warning("ledger unreachable; trying again",
                                                             metadata: ["code": "\(error.code)"])
                    try await Task.sleep(for: .seconds(1))
                }
            }
        } catch let error as LedgerError {
            if stop?.isStopped ?? false { throw ExitCode(0) }
            FileHandle.standardError.write(Data("amtsbote: \(error)\n".utf8))
            throw ExitCode(ExitStatus.ledgerUnavailable.rawValue)
        } catch {
            FileHandle.standardError.write(Data("amtsbote: configuration error: \(error)\n".utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }
    }
}

enum LogSetup {
    /// swift-log allows one bootstrap per process; each command calls this once, at its start.
    static func bootstrapOnce(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// The configured parts: validator, router, backends, ledger, spool.
struct LoadedPipeline {
    let validator: Validator
    let router: Router
    let pipeline: Pipeline?
    let ledger: (any LedgerStore)?
    /// Where payloads are kept (with the ledger: files, or the PostgreSQL database).
    let payloads: (any PayloadStore)?
    /// The configured retention periods (the defaults for states the configuration leaves out).
    let retention: RetentionPolicy
    /// The `service` section (`amtsbote serve`), if any.
    let service: AmtsboteConfiguration.Service?
    /// The configured transformations, compiled.
    let transformations: [TransformationRule]

    /// What a command needs: deciding only (no ledger), listing (the ledger read-only; nothing is changed, no
    /// backend is touched), or delivering (everything).
    enum Purpose { case decision, listing, delivery, service }

    init(options: PipelineOptions, purpose: Purpose) async throws {
        let configuration: AmtsboteConfiguration
        let base: URL
        if let path = options.config {
            configuration = try AmtsboteConfiguration.read(path)
            base = URL(fileURLWithPath: path).deletingLastPathComponent()
        } else {
            configuration = try .embeddedDefault(data: options.data ?? "amtsbote-data")
            base = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        }
        func resolve(_ path: String) -> URL {
            path.hasPrefix("/") ? URL(fileURLWithPath: path) : base.appendingPathComponent(path).standardizedFileURL
        }

        let schemaPath = try options.schemas ?? configuration.schemas.map { resolve($0).path } ?? SchemaLocation.resolve(explicit: nil)
        let schemaFolder = schemaPath.hasSuffix(".json") ? (schemaPath as NSString).deletingLastPathComponent : schemaPath
        guard let missing = CodeListCatalog.MissingListPolicy(rawValue: configuration.missingCodeLists ?? "warning") else {
            throw ConfigurationError("missingCodeLists must be ignore, warning or error")
        }
        let codeLists = try CodeListFolders.load(explicit: (configuration.codeLists ?? []).map { resolve($0).path },
                                                 schemaFolder: schemaFolder, missing: missing,
                                                 logger: Logger(label: "amtsbote.config"))
        validator = Validator(schemas: try SchemaSet(manifestAt: schemaPath), codeLists: codeLists)

        let directory = try configuration.routing.municipalities.map {
            try MunicipalityDirectory(csv: resolve($0).path, retiredKeys: configuration.routing.retiredKeys.map { resolve($0).path })
        }
        var tables: [RoutingTable] = []
        for entry in configuration.routing.tables {
            let url = resolve(entry)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
                throw ConfigurationError("routing table \(url.path) not found")
            }
            let files = isDirectory.boolValue
                ? try FileManager.default.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".tsv") }.sorted()
                    .map { url.appendingPathComponent($0).path }
                : [url.path]
            for file in files { tables.append(try RoutingTable(file: file, directory: directory)) }
        }
        guard !tables.isEmpty else { throw ConfigurationError("no routing table configured") }
        let prefixes = try configuration.routing.dvdvPrefixes.map { path -> Set<String> in
            let text = try String(contentsOf: resolve(path), encoding: .utf8)
            return Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") })
        }
        router = try Router(tables: tables, directory: directory, dvdvPrefixes: prefixes)

        self.retention = configuration.retentionPolicy
        var service = configuration.service
        if let tls = service?.tls {
            service?.tls = .init(certificate: resolve(tls.certificate).path, privateKey: resolve(tls.privateKey).path,
                                 clientCertificateAuthorities: tls.clientCertificateAuthorities.map { resolve($0).path },
                                 requireClientCertificate: tls.requireClientCertificate)
        }
        self.service = service
        transformations = try AmtsboteConfiguration.transformations(configuration, resolve: resolve)
        let environmentLedger = try LedgerSetting.fromEnvironment()
        let ledgerSetting = environmentLedger ?? configuration.ledger
        let postgres = try ledgerSetting.postgresConfiguration(fromEnvironment: environmentLedger != nil, resolve: resolve)
        switch purpose {
        case .decision:
            pipeline = nil
            ledger = nil
            payloads = nil
            return
        case .listing:
            pipeline = nil
            if let postgres {
                let shared = try await PostgresLedger.open(postgres)
                ledger = shared
                payloads = try PostgresPayloadStore(ledger: shared, scratch: resolve(configuration.spool))
            } else if case .sqlite(let path) = ledgerSetting {
                let sqlite = try SQLiteLedger(path: resolve(path).path, readOnly: true)
                ledger = sqlite
                payloads = SQLitePayloadStore(ledger: sqlite, scratch: resolve(configuration.spool))
            } else {
                ledger = nil
                payloads = nil
            }
            return
        case .delivery, .service:
            break
        }
        var registry = PostfachBackendRegistry.builtIn
        HTTPBackend.register(in: &registry)
        FITConnectBackend.register(in: &registry)
        var backends: [String: any PostfachBackend] = [:]
        for (name, backend) in configuration.backends {
            do {
                backends[name] = try await registry.make(kind: backend.kind,
                                                         settings: BackendSettings(parameters: backend.parameters ?? [:], baseDirectory: base))
            } catch {
                // The backends made so far hold connections: released before the error ends the command.
                for made in backends.values { await made.shutdown() }
                throw ConfigurationError("key 'backends.\(name)': \((error as? PostfachError)?.message ?? "\(error)")")
            }
        }
        do {
            let assembled = try await Self.assemble(configuration, backends: backends, postgres: postgres,
                                                    ledgerSetting: ledgerSetting, validator: validator, router: router,
                                                    transformations: transformations, purpose: purpose, resolve: resolve)
            pipeline = assembled
            ledger = assembled.ledger
            payloads = assembled.payloads
        } catch {
            for made in backends.values { await made.shutdown() }
            throw error
        }
    }

    /// The ledger, the payload store and the pipeline over the backends made from the configuration.
    private static func assemble(_ configuration: AmtsboteConfiguration, backends: [String: any PostfachBackend],
                                 postgres: PostgresLedgerConfiguration?, ledgerSetting: LedgerSetting, validator: Validator,
                                 router: Router, transformations: [TransformationRule], purpose: Purpose,
                                 resolve: (String) -> URL) async throws -> Pipeline {
        guard let defaultBackend = backends[configuration.postfaecher.default] else {
            throw ConfigurationError("postfaecher.default names no configured backend ('\(configuration.postfaecher.default)')")
        }
        var overrides: [String: any PostfachBackend] = [:]
        for (postfach, name) in configuration.postfaecher.overrides ?? [:] {
            guard let backend = backends[name] else { throw ConfigurationError("postfaecher.overrides.\(postfach) names no configured backend ('\(name)')") }
            overrides[postfach] = backend
        }
        // Only files of processes that are gone: a delivery under way in another process keeps its own.
        for backend in backends.values { (backend as? FilesystemBackend)?.removeIncompleteFiles() }

        let ledger: any LedgerStore
        let payloads: any PayloadStore
        let inMemoryLimit = try configuration.payloadInMemoryBytes()
        if let postgres {
            let shared = try await PostgresLedger.open(postgres)
            ledger = shared
            payloads = try PostgresPayloadStore(ledger: shared, scratch: resolve(configuration.spool),
                                                inMemoryLimit: inMemoryLimit)
        } else {
            guard case .sqlite(let path) = ledgerSetting else { throw ConfigurationError("no ledger configured") }
            let ledgerURL = resolve(path)
            try FileManager.default.createDirectory(at: ledgerURL.deletingLastPathComponent(), withIntermediateDirectories: true)
            let sqlite = try SQLiteLedger(path: ledgerURL.path)
            ledger = sqlite
            payloads = SQLitePayloadStore(ledger: sqlite, scratch: resolve(configuration.spool), inMemoryLimit: inMemoryLimit)
        }
        let retry = configuration.retry
        let lease = Duration.milliseconds(Int64((retry?.leaseSeconds ?? 30) * 1000))
        let heartbeat = retry?.heartbeatSeconds.map { Duration.milliseconds(Int64($0 * 1000)) } ?? lease / 3
        let policy = RetryPolicy(
            maxAttempts: retry?.maxAttempts ?? 5,
            initialDelay: .milliseconds(Int64((retry?.initialDelaySeconds ?? 1) * 1000)),
            multiplier: retry?.multiplier ?? 2,
            maxDelay: .milliseconds(Int64((retry?.maxDelaySeconds ?? 60) * 1000)),
            attemptTimeout: (retry?.attemptTimeoutSeconds ?? 120) > 0
                ? .milliseconds(Int64((retry?.attemptTimeoutSeconds ?? 120) * 1000)) : nil,
            lease: lease, heartbeat: heartbeat > .zero ? heartbeat : nil,
            confirmationCheck: .milliseconds(Int64(max(0, retry?.confirmationCheckSeconds ?? 300) * 1000)),
            confirmationDeadline: .milliseconds(Int64(max(0, retry?.confirmationDeadlineSeconds ?? 2_592_000) * 1000)))
        return Pipeline(validator: validator, router: router,
                        backends: BackendSelection(default: defaultBackend, overrides: overrides, others: Array(backends.values)),
                        ledger: ledger, spool: try Spool(directory: resolve(configuration.spool)), payloads: payloads,
                        retry: policy, deliversOnIntake: purpose == .delivery && !ledger.isShared,
                        transformations: transformations)
    }
}

extension AmtsboteConfiguration {
    /// The transformations, compiled: every stylesheet once, now, so that a broken one is a configuration error
    /// (exit 2) naming its file and line rather than a failed delivery later.
    static func transformations(_ configuration: AmtsboteConfiguration, resolve: (String) -> URL) throws -> [TransformationRule] {
        try (configuration.transformations ?? []).enumerated().map { index, rule in
            let key = "transformations[\(index)]"
            guard !rule.stylesheets.isEmpty else { throw ConfigurationError("key '\(key).stylesheets': at least one stylesheet") }
            let steps = try rule.stylesheets.enumerated().map { step, path in
                do { return try Stylesheet(path: resolve(path).path) } catch let error as TransformError {
                    throw ConfigurationError("key '\(key).stylesheets[\(step)]': \(error)")
                }
            }
            var target: Validator?
            if let xsd = rule.targetSchema {
                do { target = Validator(schemas: try SchemaSet(xsd: resolve(xsd).path)) } catch {
                    throw ConfigurationError("key '\(key).targetSchema': \(error)")
                }
            }
            if let seconds = rule.timeoutSeconds, !(seconds > 0 && seconds <= 3600) {
                throw ConfigurationError("key '\(key).timeoutSeconds': expected seconds between 0 and 3600, found \(seconds)")
            }
            if let bytes = rule.maxOutputBytes, bytes <= 0 {
                throw ConfigurationError("key '\(key).maxOutputBytes': expected a positive number of bytes")
            }
            let limits = TransformLimits(timeout: .milliseconds(Int64((rule.timeoutSeconds ?? 10) * 1000)),
                                         maxOutputBytes: rule.maxOutputBytes ?? 64 << 20)
            return TransformationRule(name: rule.name ?? "transformation \(index + 1)", postfach: rule.postfach,
                                      schemaId: rule.schema, steps: steps, target: target, limits: limits)
        }
    }
}

struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
