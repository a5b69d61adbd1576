import ArgumentParser
import Foundation
import XoevReports

/// `amtsbote explain CODE`: what a diagnostic or reason code means and how to fix the document.
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Explain a diagnostic or reason code: what it means and how to fix the document.",
        discussion: """
        Codes are stable (Docs/diagnostics.md). A prefix such as `schema.value` lists every code it starts.
        --list prints every code, one per line.

        EXIT CODES
          0  explained
          2  unknown code, or no code given
        """
    )

    @Argument(help: "A code such as schema.value.pattern, or a prefix such as codelist.")
    var code: String?

    @Flag(name: .long, help: "List every code with its meaning.")
    var list = false

    func validate() throws {
        if code == nil && !list { throw ValidationError("give a code, or --list") }
    }

    func run() throws {
        if list {
            var out = ""
            for entry in DiagnosticCatalog.entries { out += "\(entry.code)\t\(entry.meaning)\n" }
            FileHandle.standardOutput.write(Data(out.utf8))
            return
        }
        let wanted = (code ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        let matches = DiagnosticCatalog.byCode[wanted].map { [$0] }
            ?? DiagnosticCatalog.entries.filter { $0.code.hasPrefix(wanted.hasSuffix(".") ? wanted : wanted + ".") }
        guard !matches.isEmpty else {
            let near = DiagnosticCatalog.entries.map(\.code).filter { $0.contains(wanted.split(separator: ".").last.map(String.init) ?? wanted) }
            let hint = near.isEmpty ? "" : " (similar: \(near.prefix(5).joined(separator: ", ")))"
            FileHandle.standardError.write(Data("error: unknown code '\(wanted)'\(hint); `amtsbote explain --list` shows all\n".utf8))
            throw ExitCode(ExitStatus.usage.rawValue)
        }
        var out = ""
        for (index, entry) in matches.enumerated() {
            if index > 0 { out += "\n" }
            out += "\(entry.code)  (\(entry.section))\n"
            out += "  What it means: \(entry.meaning)\n"
            if !entry.fix.isEmpty { out += "  How to fix:    \(entry.fix)\n" }
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
