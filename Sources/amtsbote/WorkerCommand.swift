import XoevReports
import AmtsbotePipeline
import ArgumentParser
import Dispatch
import Foundation

/// `amtsbote worker`: delivers queued submissions from the (shared) ledger.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Deliver queued submissions until stopped (SIGTERM, SIGINT) or, with --drain, until nothing is due.",
        discussion: """
        Any number of workers, on any number of machines, share one PostgreSQL ledger (Docs/scaling.md); with the
        embedded SQLite ledger, workers on the one machine share it. Each claims due deliveries in small batches,
        holds a lease on each while it delivers (extended by heartbeat), and records every outcome. On SIGTERM or
        SIGINT it stops claiming, lets the deliveries in flight finish and be recorded, and exits 0; a second
        signal cancels them (they are recorded as cancelled and go back to the queue).

        EXIT CODES: 0 stopped or drained, 2 configuration error, 6 ledger unreachable at start.
        """)

    @Option(name: .long, help: "Deliveries in flight at most.")
    var concurrency: Int = 4

    @Option(name: .long, help: "Deliveries claimed per transaction at most (default: --concurrency; 1 = single-row claims).")
    var batch: Int?

    @Option(name: .long, help: "Claims sent side by side when --batch is smaller than the free slots (default 8).")
    var parallelClaims: Int = 8

    @Option(name: .long, help: "Seconds an idle worker waits for a notification before it looks for due work again.")
    var poll: Double = 2

    @Flag(name: .long, help: "Exit as soon as nothing is due and nothing is in flight.")
    var drain = false

    @Option(name: .long, help: "Seconds to keep trying to reach the ledger at start (a database that restarts).")
    var waitForLedger: Double = 60

    @OptionGroup var options: PipelineOptions

    func validate() throws {
        if concurrency < 1 { throw ValidationError("--concurrency must be at least 1") }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
        if parallelClaims < 1 { throw ValidationError("--parallel-claims must be at least 1") }
        if poll <= 0 { throw ValidationError("--poll must be positive") }
        if waitForLedger < 0 { throw ValidationError("--wait-for-ledger must not be negative") }
    }

    func run() async throws {
        // Signals count from the very start: one during start-up ends the worker before it claims anything.
        let shutdown = ShutdownControl()
        let loaded = try await options.load(.delivery, waitingForLedger: .milliseconds(Int64(waitForLedger * 1000)),
                                            until: shutdown.stop)
        guard let pipeline = loaded.pipeline else { throw ExitCode(ExitStatus.usage.rawValue) }
        let stop = shutdown.stop
        let worker = DeliveryWorker(pipeline: pipeline, concurrency: concurrency, batchSize: batch, parallelClaims: parallelClaims,
                                    poll: .milliseconds(Int64(poll * 1000)), drain: drain)
        let run = Task { () -> DeliveryWorker.Summary in
            // A database that restarts just after the start is waited for, as in the delivery loop.
            try await pipeline.recoverWaitingForLedger(poll: worker.poll, until: stop)
            return try await worker.run(until: stop)
        }
        shutdown.onSecondSignal { run.cancel() }
        let summary: DeliveryWorker.Summary
        do {
            summary = try await run.value
        } catch is CancellationError {
            await pipeline.close()
            throw ExitCode(0)
        } catch let error as LedgerError {
            FileHandle.standardError.write(Data("amtsbote: worker: \(error)\n".utf8))
            await pipeline.close()
            throw ExitCode(ExitStatus.ledgerUnavailable.rawValue)
        }
        await pipeline.close()
        var out = StandardOutput()
        out.append("worker: \(summary.attempts) attempt(s), \(summary.delivered) delivered, "
                   + "\(summary.failed) failed or re-queued\n")
        out.flush()
    }
}

/// SIGTERM and SIGINT for a long-running command, watched from its start: the first signal sets ``stop`` (and runs
/// what ``onFirstSignal(_:)`` registered: a graceful shutdown); the second runs what ``onSecondSignal(_:)``
/// registered (cancel what is in flight). A handler registered after its signal came runs at once.
final class ShutdownControl: @unchecked Sendable {
    let stop = StopSignal()
    // Safety: every access to the counters and handlers holds the lock.
    private let lock = NSLock()
    private var signals = 0
    private var first: [@Sendable () -> Void] = []
    private var second: [@Sendable () -> Void] = []
    private var watch: SignalWatch?

    init() {
        watch = SignalWatch(signals: [SIGTERM, SIGINT]) { [weak self] count in self?.signalled(count) }
    }

    deinit { watch?.cancel() }

    private func signalled(_ count: Int) {
        lock.lock()
        signals = count
        let run = count == 1 ? first : count == 2 ? second : []
        lock.unlock()
        if count == 1 { stop.stop() }
        run.forEach { $0() }
    }

    /// Runs `handler` on the first signal (at once if it came already).
    func onFirstSignal(_ handler: @escaping @Sendable () -> Void) {
        lock.lock()
        let now = signals >= 1
        if !now { first.append(handler) }
        lock.unlock()
        if now { handler() }
    }

    /// Runs `handler` on the second signal (at once if it came already).
    func onSecondSignal(_ handler: @escaping @Sendable () -> Void) {
        lock.lock()
        let now = signals >= 2
        if !now { second.append(handler) }
        lock.unlock()
        if now { handler() }
    }
}

/// Counts deliveries of some signals (instead of their default action) and calls `handler` with the count.
final class SignalWatch: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]

    init(signals: [Int32], handler: @escaping @Sendable (Int) -> Void) {
        let counter = SignalCounter()
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(counter.next()) }
            source.resume()
            return source
        }
    }

    func cancel() { sources.forEach { $0.cancel() } }
}

private final class SignalCounter: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var count = 0
    func next() -> Int {
        lock.lock(); defer { lock.unlock() }
        count += 1
        return count
    }
}
