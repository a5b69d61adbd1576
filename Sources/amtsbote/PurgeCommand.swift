import AmtsbotePipeline
import ArgumentParser
import Foundation
import XoevReports

/// `amtsbote purge`: deletes the payloads of finished submissions past their retention period; keeps the audit rows.
struct PurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Delete payloads of finished submissions past their retention period (the ledger rows stay, marked purged).",
        discussion: """
        Retention comes from the configuration's `retention` object (defaults: delivered and duplicate 7 days;
        rejected, unroutable, conflict, dead and abandoned 30 days), counted from the moment a submission became
        final. Unfinished work (received, validated, queued) is never touched. Run it daily, e.g. from cron.

        EXIT CODES: 0 done (or nothing to do), 2 usage or configuration error.
        """)

    @Option(name: .long, help: "Purge everything final that is older than this (e.g. 30d, 12h), instead of the configured periods.")
    var olderThan: String?

    @Option(name: .long, help: "Only these final states (repeatable): \(SubmissionState.allCases.filter(\.isFinal).map(\.rawValue).joined(separator: ", ")).")
    var state: [String] = []

    @Flag(name: .long, help: "List what would be purged; change nothing.")
    var dryRun = false

    @OptionGroup var options: PipelineOptions

    func validate() throws {
        if let olderThan, RetentionPolicy.seconds(of: olderThan) == nil {
            throw ValidationError("--older-than expects a duration such as 30d, 12h, 90m or 45s, not '\(olderThan)'")
        }
        for name in state {
            guard let parsed = SubmissionState(rawValue: name) else { throw ValidationError("unknown state '\(name)'") }
            if !parsed.isFinal { throw ValidationError("'\(name)' is unfinished work, which is never purged") }
        }
    }

    func run() async throws {
        let loaded = try await options.load(.delivery)
        guard let ledger = loaded.ledger else { throw ExitCode(ExitStatus.usage.rawValue) }
        let purged = try await Purge(ledger: ledger, payloads: loaded.payloads ?? FilesystemPayloadStore()).run(
            policy: loaded.retention, olderThan: olderThan.flatMap(RetentionPolicy.seconds(of:)),
            states: state.isEmpty ? nil : state.compactMap(SubmissionState.init(rawValue:)), dryRun: dryRun)
        var out = StandardOutput()
        let dates = ISO8601DateFormatter()
        for row in purged {
            let verb = dryRun ? "would purge" : "purged"
            out.append("#\(row.id ?? 0) \(row.state.rawValue) since \(dates.string(from: row.updatedAt)): \(verb) the payload (\(row.payloadSize ?? 0) bytes)\n")
        }
        out.append(dryRun ? "\(purged.count) payload(s) would be purged; nothing changed\n"
                          : "\(purged.count) payload(s) purged; their ledger rows are kept as the audit record\n")
        out.flush()
        if let pipeline = loaded.pipeline { await pipeline.close() } else { await ledger.close() }
    }
}
