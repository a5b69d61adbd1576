import ArgumentParser
import Foundation

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
}

@main
struct Amtsbote: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amtsbote",
        abstract: "Validate XÖV / OZG submissions against their form schemas, safely and while streaming.",
        discussion: """
        EXIT CODES
          0  every document is valid
          1  at least one document is invalid (not well-formed, refused by a limit, no schema, schema-invalid)
          2  usage or configuration error (bad flags, unreadable manifest or catalog, no usable schema)
          3  at least one input could not be read (3 wins over 1)
        """,
        subcommands: [ValidateCommand.self]
    )

    /// Runs the command and maps every failure to a documented exit code (argument errors are 2, not 64).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
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
