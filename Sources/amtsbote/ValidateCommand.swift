import ArgumentParser
import Foundation
import XoevReports
import Logging
import XoevValidation

/// Output of commands that list records (submit, deliveries): text or JSON Lines.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Output of `validate`: also JUnit XML and SARIF for CI systems.
enum ValidationOutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, junit, sarif
}

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Validate files, folders (recursively, *.xml) or standard input (-) against the schema set.",
        discussion: """
        The schema for each document is chosen by its root element (namespace, name, version attribute) from the
        schema manifest. Without --schemas or --xsd the embedded default is used: $AMTSBOTE_SCHEMAS, else ./Schemas,
        else the Schemas folder of the installation.

        EXIT CODES
          0  every document is valid
          1  at least one document is invalid
          2  usage or configuration error
          3  at least one input could not be read (3 wins over 1)
        """
    )

    @Argument(help: "Files, folders (searched recursively for *.xml) or - for standard input.")
    var paths: [String] = []

    @Option(name: .long, help: "Schema manifest (amtsbote-schemas.json) or a folder containing one.")
    var schemas: String?

    @Option(name: .long, help: "Validate every document against this one XSD instead of a manifest.")
    var xsd: String?

    @Option(name: .long, help: "OASIS XML catalog for --xsd (repeatable).")
    var catalog: [String] = []

    @Option(name: .long, help: "Folder the --xsd schema may load files from (default: the XSD's folder).")
    var schemaRoot: String?

    @Option(name: .customLong("code-lists"),
            help: "Folder of genericode code lists to check XÖV codes against (repeatable; default: the schema set's codelists folder).")
    var codeListFolders: [String] = []

    @Option(name: .long, help: "A code whose list or list version is not loaded: ignore, warning (default) or error.")
    var missingCodeLists: CodeListCatalog.MissingListPolicy = .warning

    @Flag(name: .long, help: "Do not check codes against code lists.")
    var noCodeLists = false

    @Option(name: .long, help: "Output format: text (default), json (one JSON object per line and document), junit or sarif (written when the batch ends).")
    var format: ValidationOutputFormat = .text

    @Option(name: .long, help: "Also write a self-contained HTML report of the batch to this file.")
    var report: String?

    @Flag(name: .shortAndLong, help: "Print nothing; the exit code tells the outcome.")
    var quiet = false

    @Option(name: .long, help: "Largest document in bytes; 0 = unlimited.")
    var maxSize: Int64 = ValidationLimits.safeProfile.maxBytes

    @Option(name: .long, help: "Deepest element nesting.")
    var maxDepth: Int = ValidationLimits.safeProfile.maxDepth

    @Option(name: .long, help: "Most attributes and namespace declarations on one start tag.")
    var maxAttributes: Int = ValidationLimits.safeProfile.maxAttributes

    @Option(name: .long, help: "Longest text node in bytes; 0 = unlimited.")
    var maxText: Int64 = ValidationLimits.safeProfile.maxTextBytes

    @Option(name: .long, help: "Most findings listed per document.")
    var maxDiagnostics: Int = ValidationLimits.safeProfile.maxDiagnostics

    @Option(name: .long, help: "Seconds one document may take before it ends as input.timeout; 0 = no limit.")
    var timeout: Double = 30

    @Option(name: .shortAndLong, help: "Documents validated at once (default: the number of cores). Output stays in input order.")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "Log level on standard error (trace, debug, info, notice, warning, error, critical).")
    var logLevel: String = "warning"

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one file, folder or - for standard input") }
        if schemas != nil && xsd != nil { throw ValidationError("use either --schemas or --xsd, not both") }
        if !catalog.isEmpty && xsd == nil { throw ValidationError("--catalog belongs to --xsd; a manifest names its own catalogs") }
        if paths.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be read only once") }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("unknown log level '\(logLevel)'") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if maxDepth < 1 || maxAttributes < 1 || maxSize < 0 || maxText < 0 || maxDiagnostics < 1 || timeout < 0 {
            throw ValidationError("limits must be positive (0 switches --max-size and --max-text off)")
        }
    }

    func run() throws {
        LogSetup.bootstrapOnce(level: Logger.Level(rawValue: logLevel) ?? .warning)
        let logger = Logger(label: "amtsbote.validate")

        let schemaSet: SchemaSet
        let codeLists: CodeListCatalog?
        do {
            let (set, manifestFolder) = try loadSchemas(logger: logger)
            schemaSet = set
            codeLists = noCodeLists ? nil
                : try CodeListFolders.load(explicit: codeListFolders, schemaFolder: manifestFolder,
                                           missing: missingCodeLists, logger: logger)
        } catch let error as XoevValidation.ValidationError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }
        let validator = Validator(schemas: schemaSet, limits: ValidationLimits(
            maxBytes: maxSize, maxDepth: maxDepth, maxAttributes: maxAttributes, maxTextBytes: maxText,
            maxDiagnostics: maxDiagnostics, timeLimit: .milliseconds(Int64(timeout * 1000))), codeLists: codeLists)

        var reporter: any Reporter = switch (quiet, format) {
        case (true, _): SilentReporter()
        case (false, .text): TextReporter()
        case (false, .json): JSONLinesReporter()
        case (false, .junit): JUnitReporter()
        case (false, .sarif): SARIFReporter()
        }
        var htmlReport: HTMLReport?
        do {
            htmlReport = try report.map { try HTMLReport(path: $0) }
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }
        let showProgress = !quiet && Progress.terminalAttached
        var progress = Progress(enabled: showProgress, total: showProgress ? InputFiles(paths).reduce(0) { n, _ in n + 1 } : nil)
        var tally = Tally()
        ParallelValidation(inputs: InputFiles(paths), validator: validator, jobs: jobs).run { outcome in
            tally.count(outcome)
            progress.advance()
            htmlReport?.write(outcome)
            switch outcome {
            case .report(let report):
                for d in report.diagnostics where d.severity >= .error {
                    // Codes and places only: messages may quote a citizen's data.
                    logger.debug("finding", metadata: ["document": "\(report.document)", "code": "\(d.code)",
                                                       "line": "\(d.line)", "column": "\(d.column)", "path": "\(d.path)"])
                }
            case .unreadable(let document, let code, _):
                logger.warning("input unreadable", metadata: ["document": "\(document)", "code": "\(code)"])
            }
            reporter.write(outcome)
        }
        progress.finish()
        // Schemas compiled on first use report their compile errors now (documents that selected a broken one
        // were refused with schema.unavailable and its first error).
        if xsd == nil { Self.log(schemaSet.loadDiagnostics, logger: logger) }
        reporter.finish(tally)
        do {
            try htmlReport?.finish(tally)
        } catch {
            // The verdicts were printed, but the report asked for is missing: not a success.
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(max(tally.exitStatus.rawValue, ExitStatus.usage.rawValue))
        }
        throw ExitCode(tally.exitStatus.rawValue)
    }

    static func validate(_ source: InputSource, with validator: Validator) -> Outcome {
        do {
            switch source {
            case .file(let path):
                return .report(try validator.validate(file: path))
            case .standardInput:
                return .report(try validator.validate(fileDescriptor: STDIN_FILENO, named: "-"))
            case .unreadable(let path, let reason):
                return .unreadable(document: path, code: XoevValidation.ValidationError.Code.inputUnreadable.rawValue,
                                   message: reason)
            }
        } catch let error as XoevValidation.ValidationError {
            return .unreadable(document: error.file, code: error.code.rawValue, message: error.message)
        } catch {
            return .unreadable(document: "\(source)", code: "input.unreadable", message: "\(error)")
        }
    }

    /// The schema set, and the folder of its manifest (nil for --xsd).
    private func loadSchemas(logger: Logger) throws -> (SchemaSet, String?) {
        let set: SchemaSet
        var folder: String?
        if let xsd {
            set = try SchemaSet(xsd: xsd, catalogs: catalog, allowedRoot: schemaRoot)
        } else {
            let location = try SchemaLocation.resolve(explicit: schemas)
            // Only the schemas the documents select are compiled: one file, one schema (start-up time).
            set = try SchemaSet(manifestAt: location, compilation: .onFirstUse)
            folder = location.hasSuffix(".json") ? (location as NSString).deletingLastPathComponent : location
            return (set, folder)
        }
        Self.log(set.loadDiagnostics, logger: logger)
        return (set, folder)
    }

    private static func log(_ diagnostics: [Diagnostic], logger: Logger) {
        for d in diagnostics {
            let place = "\(d.file ?? "schema"):\(d.line)"
            if d.severity >= .error {
                logger.error("\(place): \(d.code): \(d.message)")
            } else {
                logger.warning("\(place): \(d.code): \(d.message)")
            }
        }
    }
}

extension CodeListCatalog.MissingListPolicy: ExpressibleByArgument {}

/// Which code lists a command checks against: the folders given, else the schema set's `codelists` folder.
enum CodeListFolders {
    static func load(explicit: [String], schemaFolder: String?, missing: CodeListCatalog.MissingListPolicy,
                     logger: Logger) throws -> CodeListCatalog? {
        var folders = explicit
        if folders.isEmpty, let schemaFolder {
            let candidate = (schemaFolder as NSString).appendingPathComponent("codelists")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDirectory), isDirectory.boolValue {
                folders = [candidate]
            }
        }
        guard !folders.isEmpty else { return nil }
        var catalog = try CodeListCatalog(directories: folders)
        catalog.missingLists = missing
        for d in catalog.loadDiagnostics {
            logger.warning("\(d.file ?? "code list"): \(d.code): \(d.message)")
        }
        logger.debug("code lists loaded", metadata: ["versions": "\(catalog.count)"])
        return catalog
    }
}

/// Finds the embedded default schema set when none is named.
enum SchemaLocation {
    static func resolve(explicit: String?) throws -> String {
        if let explicit { return explicit }
        if let fromEnvironment = ProcessInfo.processInfo.environment["AMTSBOTE_SCHEMAS"], !fromEnvironment.isEmpty {
            return fromEnvironment
        }
        if let found = Installation.find("Schemas", containing: SchemaManifest.defaultFileName) { return found.path }
        throw XoevValidation.ValidationError(
            code: .manifestInvalid, file: "Schemas",
            message: "no schema set found: pass --schemas, set AMTSBOTE_SCHEMAS or run from the project folder")
    }
}

/// Where the tool's own data (the schema set, the sample routing) is found: the working folder first, then beside
/// the installation (`bin/../Schemas`, `share/amtsbote/…`) or, for a build, the package root above `.build/`.
enum Installation {
    /// The first folder `relative` (from the working folder, then upwards from the executable) holding `marker`.
    static func find(_ relative: String, containing marker: String) -> URL? {
        var candidates = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(relative)]
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(directory.appendingPathComponent(relative))
            candidates.append(directory.appendingPathComponent("share/amtsbote").appendingPathComponent(relative))
            directory = directory.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent(marker).path) }
    }
}

extension Tally {
    /// The exit status of a batch: unreadable input over invalid documents over success.
    var exitStatus: ExitStatus { ExitStatus(rawValue: exitCode) ?? .unreadable }
}
