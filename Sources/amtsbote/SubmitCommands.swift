import AmtsbotePipeline
import ArgumentParser
import Foundation
import XoevReports
import XoevRouting
import XoevValidation

/// `amtsbote submit`: validate, route and deliver, recording every step in the ledger.
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Validate, route and deliver submissions (files, folders or - for standard input).",
        discussion: """
        Every submission is recorded in the ledger before anything else happens, and ends delivered, or kept with
        its reason: rejected (invalid), unroutable, duplicate (same message id and payload as an earlier one),
        conflict (same message id, different payload: kept, never delivered under that id), or dead (delivery
        failed after retries; `amtsbote retry` re-queues). A restart first resumes unfinished work.

        EXIT CODES (the highest applies)
          0  every document delivered (or a resend of one already delivered)
          1  at least one document rejected as invalid
          2  usage or configuration error
          3  at least one input could not be read
          4  at least one document could not be routed
          5  at least one delivery failed (queued for retry or dead-lettered) or was kept as an id conflict
          6  the ledger cannot be reached (nothing was recorded)

        With the embedded ledger, submit also delivers. With a shared ledger (PostgreSQL, see Docs/scaling.md)
        it records and queues, and `amtsbote worker` processes deliver; a queued submission then counts as done.
        """
    )

    @Argument(help: "Files, folders (recursively, *.xml) or - for standard input.")
    var paths: [String] = []

    @OptionGroup var options: PipelineOptions

    @Flag(name: .long, help: "Validate and route, print the decision, deliver nothing and record nothing.")
    var dryRun = false

    @Option(name: .long, help: "Output format: text or json (one object per document and line).")
    var format: OutputFormat = .text

    @Option(name: .long, help: "Seconds to wait for retries of failed deliveries before exiting (0 = do not wait).")
    var wait: Double = 30

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one file, folder or - for standard input") }
        if paths.filter({ $0 == "-" }).count > 1 { throw ValidationError("standard input (-) can be read only once") }
        if wait < 0 { throw ValidationError("--wait must not be negative") }
    }

    func run() async throws {
        let loaded = try await options.load(dryRun ? .decision : .delivery)
        var printer = SubmissionPrinter(format: format)
        var status = ExitStatus.allValid
        if dryRun {
            for source in InputFiles(paths) {
                let outcome = ValidateCommand.validate(source, with: loaded.validator)
                let line = DryRun.decide(outcome, router: loaded.router)
                status = max(status, line.status)
                printer.write(line.record)
            }
            printer.finish()
            throw ExitCode(status.rawValue)
        }
        guard let pipeline = loaded.pipeline else { throw ExitCode(ExitStatus.usage.rawValue) }
        let resumed = try await pipeline.recover()
        if !resumed.isEmpty {
            FileHandle.standardError.write(Data("amtsbote: resumed \(resumed.count) unfinished submission(s) from an earlier run\n".utf8))
        }
        var submitted: [Int64] = []
        for source in InputFiles(paths) {
            let submission: Submission
            switch source {
            case .file(let path): submission = try await pipeline.submit(file: path)
            case .standardInput: submission = try await pipeline.submit(fileDescriptor: STDIN_FILENO, named: "-")
            case .unreadable(let path, let reason):
                printer.write(SubmissionRecord(source: path, state: "unreadable", reasonCode: "input.unreadable", reason: reason))
                status = max(status, .unreadable)
                continue
            }
            if let id = submission.id { submitted.append(id) }
            if submission.state != .queued || !pipeline.deliversOnIntake {
                printer.write(await SubmissionRecord.of(submission, in: pipeline.ledger))
            }
        }
        if pipeline.deliversOnIntake { try await pipeline.drain(waitingAtMost: .milliseconds(Int64(wait * 1000))) }
        // Report each submission of this run in its final state (queued ones after their retries).
        for id in submitted {
            guard let submission = try await pipeline.ledger.submission(id) else { continue }
            status = max(status, await SubmissionRecord.status(of: submission, ledger: pipeline.ledger,
                                                               handedToWorkers: !pipeline.deliversOnIntake))
            if pipeline.deliversOnIntake && (submission.attempts > 1 || submission.state == .queued) {
                printer.write(await SubmissionRecord.of(submission, in: pipeline.ledger))
            }
        }
        printer.finish(counts: try await pipeline.ledger.counts(), run: submitted.count)
        await pipeline.close()
        throw ExitCode(status.rawValue)
    }
}

/// `amtsbote route --explain FILE`: the routing decision for documents, without delivering.
struct RouteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route",
        abstract: "Show where documents would go and why (validates them; delivers and records nothing).",
        discussion: "EXIT CODES: 0 routed, 1 invalid, 2 configuration error, 3 unreadable, 4 unroutable."
    )

    @Argument(help: "Files or - for standard input.")
    var paths: [String] = []

    @Flag(name: .long, help: "Print every step of the hierarchical search.")
    var explain = false

    @OptionGroup var options: PipelineOptions

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one file or - for standard input") }
    }

    func run() async throws {
        let loaded = try await options.load(.decision)
        var status = ExitStatus.allValid
        var out = StandardOutput()
        for source in InputFiles(paths) {
            let outcome = ValidateCommand.validate(source, with: loaded.validator)
            let line = DryRun.decide(outcome, router: loaded.router)
            status = max(status, line.status)
            out.append(line.text(explain: explain) + "\n")
            // The transformation a delivery would get (Docs/transform.md).
            if explain, case .report(let report) = outcome, let postfach = line.record.postfach, line.decision != nil,
               let rule = loaded.transformations.rule(postfach: postfach, schemaId: report.schema) {
                let steps = rule.steps.map { "\(($0.path as NSString).lastPathComponent) (sha256 \($0.sha256.prefix(12))…)" }
                out.append("    transformation '\(rule.name)': " + steps.joined(separator: " → ")
                           + (rule.target == nil ? "" : "; output validated against its target schema") + "\n")
            }
        }
        out.flush()
        throw ExitCode(status.rawValue)
    }
}

/// `amtsbote deliveries`: the ledger, listed.
struct DeliveriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveries",
        abstract: "List submissions in the ledger with their state, Postfach, attempts and reason.")

    @Option(name: .long, help: "Only these states (repeatable): \(SubmissionState.allCases.map(\.rawValue).joined(separator: ", ")).")
    var state: [String] = []

    @Option(name: .long, help: "Output format: text or json.")
    var format: OutputFormat = .text

    @OptionGroup var options: PipelineOptions

    func validate() throws {
        for name in state where SubmissionState(rawValue: name) == nil {
            throw ValidationError("unknown state '\(name)'")
        }
    }

    func run() async throws {
        let loaded = try await options.load(.listing)
        guard let ledger = loaded.ledger else { throw ExitCode(ExitStatus.usage.rawValue) }
        let states = state.isEmpty ? nil : state.compactMap(SubmissionState.init(rawValue:))
        var printer = SubmissionPrinter(format: format, showIDs: true)
        for submission in try await ledger.submissions(states: states, limit: nil) {
            printer.write(await SubmissionRecord.of(submission, in: ledger))
        }
        printer.finish(counts: try await ledger.counts(), run: nil)
        await ledger.close()
    }
}

/// `amtsbote retry`: dead letters back into the queue, then deliver.
struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Re-queue dead (and waiting) deliveries, all or by ledger id, and deliver them now.",
        discussion: """
        With a shared ledger (PostgreSQL) the re-queued deliveries are left to the workers.
        EXIT CODES: 0 all delivered (or queued for workers), 2 configuration error or an id that is not dead or \
        queued, 5 some still failing, 6 ledger unreachable.
        """)

    @Argument(help: "Ledger ids (see `amtsbote deliveries`); none = every dead or queued submission.")
    var ids: [Int64] = []

    @Option(name: .long, help: "Seconds to wait for further retries before exiting.")
    var wait: Double = 30

    @OptionGroup var options: PipelineOptions

    func run() async throws {
        let loaded = try await options.load()
        guard let pipeline = loaded.pipeline else { throw ExitCode(ExitStatus.usage.rawValue) }
        // Ids that name nothing to re-queue are a usage error, said before anything is done.
        var refused: [String] = []
        for id in ids {
            guard let row = try await pipeline.ledger.submission(id) else { refused.append("no submission #\(id) in the ledger"); continue }
            if ![.dead, .queued].contains(row.state) {
                refused.append("#\(id) is \(row.state.rawValue): only dead or queued submissions are re-queued")
            } else if row.purgedAt != nil {
                refused.append("#\(id): its payload was purged under the retention policy; the sender must resend")
            }
        }
        if !refused.isEmpty {
            FileHandle.standardError.write(Data(refused.map { "amtsbote: retry: \($0)\n" }.joined().utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }
        _ = try await pipeline.recover()
        let requeued = try await pipeline.requeue(ids.isEmpty ? nil : ids)
        if pipeline.deliversOnIntake { try await pipeline.drain(waitingAtMost: .milliseconds(Int64(wait * 1000))) }
        var printer = SubmissionPrinter(format: .text, showIDs: true)
        var status = ExitStatus.allValid
        for submission in requeued {
            guard let id = submission.id, let now = try await pipeline.ledger.submission(id) else { continue }
            status = max(status, await SubmissionRecord.status(of: now, ledger: pipeline.ledger,
                                                               handedToWorkers: !pipeline.deliversOnIntake))
            printer.write(await SubmissionRecord.of(now, in: pipeline.ledger))
        }
        printer.finish(counts: try await pipeline.ledger.counts(), run: requeued.count)
        await pipeline.close()
        throw ExitCode(status.rawValue)
    }
}

extension ExitStatus: Comparable {
    static func < (lhs: ExitStatus, rhs: ExitStatus) -> Bool { lhs.rawValue < rhs.rawValue }
}
