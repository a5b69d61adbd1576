import Foundation
import Logging

/// Delivers queued submissions, up to ``concurrency`` attempts at once, until asked to stop or (``drain``) until
/// nothing is due. Any number of workers, in any number of processes, share one ledger: each claims a batch of due
/// rows in one short transaction, and an idle worker sleeps until a notification or its jittered poll.
public struct DeliveryWorker: Sendable {
    public let pipeline: Pipeline
    /// Attempts in flight at most.
    public let concurrency: Int
    /// Rows claimed per transaction at most (1: single-row claims).
    public let batchSize: Int
    /// Claims sent at once when free slots outnumber ``batchSize`` (each its own transaction, on its own pooled
    /// connection): small claims then wait for their round trips and commits side by side. Only on a shared ledger
    /// (PostgreSQL); SQLite has one writer, and its claims go one at a time.
    public let parallelClaims: Int
    /// How long an idle worker waits for a notification before it looks again (drawn between half and the whole).
    public let poll: Duration
    /// Stop as soon as nothing is due (and nothing runs) instead of waiting for more work.
    public let drain: Bool

    public init(pipeline: Pipeline, concurrency: Int = 4, batchSize: Int? = nil, parallelClaims: Int = 8,
                poll: Duration = .seconds(2), drain: Bool = false) {
        self.pipeline = pipeline
        self.concurrency = max(1, concurrency)
        self.batchSize = max(1, batchSize ?? concurrency)
        self.parallelClaims = max(1, parallelClaims)
        self.poll = poll
        self.drain = drain
    }

    /// What one run did.
    public struct Summary: Sendable, Hashable {
        public var attempts = 0
        public var delivered = 0
        public var failed = 0
    }

    /// Runs until `stop` is signalled (attempts in flight finish and are recorded first) or, with ``drain``, until
    /// nothing is due. Task cancellation stops at once: attempts in flight are cancelled and recorded as such
    /// (the row goes back to the queue).
    public func run(until stop: StopSignal = StopSignal()) async throws -> Summary {
        let ledger = pipeline.ledger
        let state = WorkerState()
        let wake = WakeUps()
        let confirming = ConfirmationPass()
        // A stop also cancels a pass over the receivers' answers: it holds no lease, and nothing of it is lost.
        stop.onStop { wake.signal(); confirming.cancel() }
        var lastRescue = ContinuousClock.now - .seconds(3600)
        // Receivers' answers about earlier deliveries are asked for beside the deliveries, one pass at a time.
        var lastConfirmations = ContinuousClock.now - .seconds(3600)
        let confirmationPoll = min(max(pipeline.retry.confirmationCheck / 5, .seconds(1)), .seconds(30))
        // A discarding group: a finished attempt's task is released at once. A plain task group keeps every finished
        // child until its result is consumed, which a worker that runs for days never does (17 KB per delivery).
        try await withThrowingDiscardingTaskGroup { group in
            while !stop.isStopped {
                try Task.checkCancellation()
                let free = concurrency - state.running
                // Claims side by side only where they can run side by side (a database server; SQLite has one writer).
                let wanted = min(free, batchSize * (ledger.isShared ? parallelClaims : 1))
                var claimed: [Submission] = []
                do {
                    if ContinuousClock.now - lastRescue >= poll {
                        try await pipeline.rescueRunning()
                        lastRescue = .now
                    }
                    if wanted > 0 { claimed = try await claim(wanted) }
                    if !drain, ContinuousClock.now - lastConfirmations >= confirmationPoll || confirming.wantsMore,
                       confirming.begin() {
                        lastConfirmations = .now
                        group.addTask {
                            let batch = 100
                            let pass = Task { try await pipeline.checkConfirmations(limit: batch, until: stop) }
                            confirming.track(pass)
                            var full = false
                            do { full = try await pass.value.asked == batch } catch where !(error is CancellationError) {
                                pipeline.logger.warning("receivers' answers not checked", metadata: [
                                    "code": "\((error as? LedgerError)?.code ?? "ledger.unavailable")"])
                            } catch {}
                            // A full batch: more may be due, and the next pass starts at once.
                            confirming.end(full: full)
                            if full { wake.signal() }
                        }
                    }
                } catch let error as LedgerError where error.code == "ledger.unavailable" {
                    // The database restarts or fails over: wait and try again; leases cover what is in flight.
                    pipeline.logger.warning("ledger unreachable; the worker waits", metadata: ["code": "\(error.code)"])
                    try await Task.sleep(for: .milliseconds(Int64.random(in: (poll.milliseconds / 2)...max(1, poll.milliseconds))))
                    continue
                }
                for row in claimed {
                    if stop.isStopped {
                        // Asked to stop between the claim and the attempt: given back, not attempted.
                        _ = try? await ledger.release(row)
                        continue
                    }
                    state.started()
                    group.addTask {
                        var delivered = false
                        do {
                            delivered = try await pipeline.attempt(row).state == .delivered
                        } catch {
                            // The outcome could not be recorded (the ledger unreachable for longer than the lease):
                            // the lease runs out and another attempt follows.
                            pipeline.logger.error("attempt outcome not recorded", metadata: [
                                "submission": "\(row.id ?? 0)",
                                "code": "\((error as? LedgerError)?.code ?? "ledger.unavailable")", "error": "\(error)"])
                        }
                        state.finished(delivered: delivered)
                        wake.signal()
                    }
                }
                if claimed.count == wanted && wanted > 0 { continue }  // Maybe more is due.
                if drain && claimed.isEmpty && state.running == 0 {
                    // Nothing claimed: done only if nothing is due (a claim can come back empty while other
                    // workers hold the due rows' locks for a moment).
                    // A ledger that cannot answer is not "nothing due": wait and look again.
                    let next: Date?
                    do {
                        next = try await ledger.nextAttempt()
                    } catch {
                        try await Task.sleep(for: poll)
                        continue
                    }
                    if next.map({ $0 > Date() }) ?? true { break }
                    continue
                }
                // Wait for a free slot, new work, or the poll.
                let timeout = Duration.milliseconds(Int64.random(in: (poll.milliseconds / 2)...max(1, poll.milliseconds)))
                await Self.first(of: { await wake.wait(upTo: timeout) },
                                 { if free > 0 { await ledger.waitForWork(upTo: timeout) } else { await wake.wait(upTo: timeout) } })
            }
            // The group waits for the attempts in flight before it returns.
        }
        if drain && !stop.isStopped {
            // Drained: the receivers' answers that are due now are asked for once before the worker ends. A ledger
            // that cannot answer now leaves them for the next worker; the deliveries are done.
            do {
                while true {
                    let pass = try await pipeline.checkConfirmations(limit: 500, until: stop)
                    if pass.asked < 500 || pass.accepted + pass.rejected + pass.overdue == 0 { break }
                }
            } catch let error as LedgerError {
                pipeline.logger.warning("receivers' answers not checked", metadata: ["code": "\(error.code)"])
            }
        }
        return state.summary
    }

    /// Claims up to `wanted` rows in claims of at most ``batchSize`` rows, sent at once. Rows claimed by one claim are
    /// kept when another fails (they are leased to this worker); only when every claim fails is the error thrown.
    func claim(_ wanted: Int) async throws -> [Submission] {
        let ledger = pipeline.ledger
        let lease = pipeline.retry.lease
        if wanted <= batchSize { return try await ledger.claimDue(limit: wanted, dueBy: nil, leaseFor: lease) }
        let limits = stride(from: 0, to: wanted, by: batchSize).map { min(batchSize, wanted - $0) }
        let results = await withTaskGroup(of: Result<[Submission], any Error>.self) { group in
            for limit in limits {
                group.addTask {
                    do { return .success(try await ledger.claimDue(limit: limit, dueBy: nil, leaseFor: lease)) }
                    catch { return .failure(error) }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        var claimed: [Submission] = []
        var failure: (any Error)?
        for result in results {
            switch result {
            case .success(let rows): claimed += rows
            case .failure(let error): failure = failure ?? error
            }
        }
        if let failure {
            if claimed.isEmpty { throw failure }
            pipeline.logger.warning("a claim failed beside others that succeeded", metadata: [
                "code": "\((failure as? LedgerError)?.code ?? "ledger.unavailable")"])
        }
        return claimed
    }

    /// Waits until the first of two waits returns, and cancels the other.
    static func first(of a: @escaping @Sendable () async -> Void, _ b: @escaping @Sendable () async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask(operation: a)
            group.addTask(operation: b)
            await group.next()
            group.cancelAll()
        }
    }
}

/// Asks a worker to stop claiming and to return once its attempts in flight are recorded (SIGTERM, SIGINT).
public final class StopSignal: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var stopped = false
    private var handlers: [@Sendable () -> Void] = []

    public init() {}

    public var isStopped: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopped
    }

    /// Signals the stop (once; later calls do nothing).
    public func stop() {
        lock.lock()
        guard !stopped else { lock.unlock(); return }
        stopped = true
        let run = handlers
        handlers = []
        lock.unlock()
        for handler in run { handler() }
    }

    func onStop(_ handler: @escaping @Sendable () -> Void) {
        lock.lock()
        guard !stopped else { lock.unlock(); handler(); return }
        handlers.append(handler)
        lock.unlock()
    }
}

/// The worker's pass over the receivers' answers: one at a time, the next at once after a full batch, cancelled
/// when the worker stops.
final class ConfirmationPass: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var running = false
    private var full = false
    private var cancelled = false
    private var task: Task<ConfirmationSummary, any Error>?

    /// `true` when no pass runs and this call starts one.
    func begin() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard !running, !cancelled else { return false }
        running = true
        return true
    }

    /// The running pass, to cancel on a stop.
    func track(_ pass: Task<ConfirmationSummary, any Error>) {
        lock.lock()
        task = pass
        let cancelNow = cancelled
        lock.unlock()
        if cancelNow { pass.cancel() }
    }

    /// The pass ended; `full`: it took a whole batch.
    func end(full: Bool) {
        lock.lock(); defer { lock.unlock() }
        running = false
        task = nil
        self.full = full
    }

    /// The last pass took a whole batch: more may be due now.
    var wantsMore: Bool {
        lock.lock(); defer { lock.unlock() }
        return full && !running
    }

    func cancel() {
        lock.lock()
        cancelled = true
        let pass = task
        lock.unlock()
        pass?.cancel()
    }
}

/// Counters of one worker run, shared by its attempts.
final class WorkerState: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var inFlight = 0
    private var done = DeliveryWorker.Summary()

    var running: Int {
        lock.lock(); defer { lock.unlock() }
        return inFlight
    }

    var summary: DeliveryWorker.Summary {
        lock.lock(); defer { lock.unlock() }
        return done
    }

    func started() {
        lock.lock(); defer { lock.unlock() }
        inFlight += 1
        done.attempts += 1
    }

    func finished(delivered: Bool) {
        lock.lock(); defer { lock.unlock() }
        inFlight -= 1
        if delivered { done.delivered += 1 } else { done.failed += 1 }
    }
}

extension Duration {
    /// Whole milliseconds (truncated).
    public var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
    /// Whole nanoseconds (truncated), as timers and NIO take them.
    public var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
