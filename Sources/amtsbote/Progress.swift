import Foundation

/// A one-line progress display on standard error (files done/total, rate, time left) for long batches. Shown only
/// when standard error is a terminal, not with --quiet, and only once a batch has run for a second
/// (`AMTSBOTE_PROGRESS_AFTER` seconds): the first file done after that draws at once, later draws come at most every
/// 200 ms. A batch that ends before the delay shows nothing.
struct Progress {
    private let enabled: Bool
    private let total: Int?
    private var done = 0
    private let start = ContinuousClock.now
    /// When the line was last drawn; nil before the first draw.
    private var lastDrawn: ContinuousClock.Instant?
    private var drawn = false
    private let delay: Duration = .milliseconds(Int64(
        (Double(ProcessInfo.processInfo.environment["AMTSBOTE_PROGRESS_AFTER"] ?? "") ?? 1) * 1000))

    /// `total` when known up front (`nil`: shown without time left).
    init(enabled: Bool, total: Int?) {
        self.enabled = enabled
        self.total = total
    }

    /// `true` when standard error is a terminal that can redraw a line.
    static var terminalAttached: Bool {
        isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    mutating func advance() {
        done += 1
        guard enabled else { return }
        let now = ContinuousClock.now
        guard now - start >= delay else { return }
        if let lastDrawn, now - lastDrawn < .milliseconds(200) { return }
        lastDrawn = now
        draw(elapsed: now - start)
    }

    private mutating func draw(elapsed: Duration) {
        let seconds = max(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, 0.001)
        let rate = Double(done) / seconds
        var line = "validated \(done)"
        if let total { line += " of \(total)" }
        line += String(format: " · %.0f files/s", rate)
        if let total, rate > 0, total > done {
            let left = Int((Double(total - done) / rate).rounded())
            line += left >= 60 ? " · about \(left / 60) min \(left % 60) s left" : " · about \(left) s left"
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
        drawn = true
    }

    /// Clears the line before the summary is printed.
    mutating func finish() {
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drawn = false
    }
}
