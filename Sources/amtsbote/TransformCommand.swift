import AmtsbotePipeline
import ArgumentParser
import Foundation
import XoevRouting
import XoevTransform
import XoevValidation

/// `amtsbote transform`: what a Postfach would receive for one document, without delivering or recording anything.
struct TransformCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transform",
        abstract: "Show what a Postfach would receive for a document: validated, routed and transformed as configured (delivers and records nothing).",
        discussion: """
            The output goes to standard output (or --output); what happened goes to standard error. Parameters are \
            those of a delivery, with the document's message id as deliveryId and the current time as receivedAt.
            EXIT CODES: 0 transformed (or no transformation applies: the document unchanged), 1 invalid, \
            2 configuration error, 3 unreadable, 4 unroutable, 5 the transformation failed.
            """)

    @Argument(help: "The document (a file, or - for standard input).")
    var path: String

    @Option(name: .long, help: "Transform for this Postfach instead of the one routing decides.")
    var postfach: String?

    @Option(name: .long, help: "Write the output to this file instead of standard output.")
    var output: String?

    @OptionGroup var options: PipelineOptions

    func run() async throws {
        let loaded = try await options.load(.decision)
        var files = InputFiles([path])
        let source = files.next() ?? .unreadable(path: path, reason: "no document")
        let outcome = ValidateCommand.validate(source, with: loaded.validator)
        let line = DryRun.decide(outcome, router: loaded.router)
        guard case .report(let report) = outcome, line.status == .allValid || postfach != nil && report.isValid else {
            FileHandle.standardError.write(Data((line.record.text + "\n").utf8))
            throw ExitCode(line.status.rawValue)
        }
        let target = postfach ?? line.record.postfach ?? ""
        let input: Data
        switch source {
        case .file(let file): input = try Data(contentsOf: URL(fileURLWithPath: file))
        default:
            FileHandle.standardError.write(Data("\(path): transform reads a file (standard input is read once, by the validator)\n".utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }
        var result = input
        if let rule = loaded.transformations.rule(postfach: target, schemaId: report.schema) {
            let keys = RoutingKeys(captured: report.captured)
            let parameters = TransformationRule.parameters(
                deliveryId: report.captured["messageId"] ?? "dry-run", receivedAt: Date(), postfach: target,
                schemaId: report.schema, submission: nil, leika: keys.leistung, ags: keys.ags)
            do { result = try rule.run(input, parameters: parameters) } catch let error as TransformError {
                FileHandle.standardError.write(Data("\(report.document): \(error.code): \(error)\n".utf8))
                throw ExitCode(ExitStatus.deliveryFailed.rawValue)
            }
            FileHandle.standardError.write(Data("\(report.document): transformed for \(target) by '\(rule.name)' (\(rule.steps.map { ($0.path as NSString).lastPathComponent }.joined(separator: " → ")))\n".utf8))
        } else {
            FileHandle.standardError.write(Data("\(report.document): no transformation applies to \(target); the document travels unchanged\n".utf8))
        }
        if let output {
            try result.write(to: URL(fileURLWithPath: output))
        } else {
            FileHandle.standardOutput.write(result)
        }
    }
}
