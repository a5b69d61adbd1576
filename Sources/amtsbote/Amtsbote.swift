import ArgumentParser
import Foundation
import XoevValidation

/// Process exit codes, documented in `--help` and README.
enum ExitStatus: Int32 {
    /// Every document is valid.
    case allValid = 0
    /// At least one document is invalid (and none was unreadable).
    case someInvalid = 1
    /// Usage or configuration error: bad flags, unreadable manifest or catalog, no usable schema.
    case usage = 2
    /// At least one input could not be read (missing file, permission, read error).
    case unreadable = 3
    /// At least one document could not be routed.
    case unroutable = 4
    /// At least one delivery failed (queued for retry or dead letter).
    case deliveryFailed = 5
    /// The ledger cannot be reached (a PostgreSQL server down or refusing): nothing was recorded.
    case ledgerUnavailable = 6
}

@main
struct Amtsbote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amtsbote",
        abstract: "Validate XÖV / OZG submissions against their form schemas, safely and while streaming.",
        discussion: """
        EXIT CODES
          0  every document is valid (validate) / delivered (submit)
          1  at least one document is invalid (not well-formed, refused by a limit, no schema, schema-invalid)
          2  usage or configuration error (bad flags, unreadable manifest, catalog or routing table)
          3  at least one input could not be read
          4  at least one document could not be routed (submit, route)
          5  at least one delivery failed and is queued for retry or dead-lettered (submit, retry)
          6  the ledger cannot be reached (a PostgreSQL server down): nothing was recorded
          When several apply, the highest wins, except that 2 stops before any document is read.
        """,
        version: "amtsbote \(Amtsbote.version) (libxml2 \(Validator.libxml2Version))",
        subcommands: [ValidateCommand.self, SubmitCommand.self, RouteCommand.self, DeliveriesCommand.self,
                      RetryCommand.self, WorkerCommand.self, ServeCommand.self, PurgeCommand.self, TransformCommand.self,
                      ExplainCommand.self]
    )

    /// The release of this build (`amtsbote --version`).
    static let version = "0.9.0"

    /// Runs the command and maps every failure to a documented exit code (argument errors are 2, not 64).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(ExitStatus.usage.rawValue)
        }
    }
}
