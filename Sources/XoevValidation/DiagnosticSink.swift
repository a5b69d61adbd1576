import CXMLShim

/// Collects the findings the C layer reports through its callbacks (one sink per document or compilation).
class DiagnosticSink {
    var diagnostics: [Diagnostic] = []

    func append(_ raw: UnsafePointer<axs_diagnostic>) {
        let d = raw.pointee
        let severity: Severity = switch d.severity {
        case Int32(AXS_SEVERITY_WARNING): .warning
        case Int32(AXS_SEVERITY_ERROR): .error
        default: .fatal
        }
        diagnostics.append(Diagnostic(
            severity: severity,
            code: d.code.map { String(cString: $0) } ?? "unknown",
            line: d.line,
            column: d.column,
            path: d.path.map { String(cString: $0) } ?? "",
            message: d.message.map { String(cString: $0) } ?? "",
            file: d.file.map { String(cString: $0) }
        ))
    }

    /// The C callback: `context` is an unretained `DiagnosticSink` (or an object that vends one).
    static let callback: axs_diagnostic_fn = { context, diagnostic in
        guard let context, let diagnostic else { return }
        Unmanaged<DiagnosticSink>.fromOpaque(context).takeUnretainedValue().append(diagnostic)
    }
}
