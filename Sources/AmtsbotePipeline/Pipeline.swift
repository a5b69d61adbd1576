import Foundation
import Logging
import Postfach
import XoevRouting
import XoevValidation

/// How failed deliveries are retried: exponential backoff, then dead letter.
public struct RetryPolicy: Sendable, Hashable {
    public var maxAttempts: Int
    public var initialDelay: Duration
    public var multiplier: Double
    public var maxDelay: Duration
    /// How long one delivery attempt may take before it counts as failed (`postfach.timeout`, retried); `nil`: no limit.
    public var attemptTimeout: Duration?

    public init(maxAttempts: Int = 5, initialDelay: Duration = .seconds(1), multiplier: Double = 2,
                maxDelay: Duration = .seconds(60), attemptTimeout: Duration? = .seconds(120)) {
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.multiplier = multiplier
        self.maxDelay = maxDelay
        self.attemptTimeout = attemptTimeout
    }

    /// How long a process holds a queued row while it delivers it: the attempt's time limit and a minute more (15
    /// minutes without a limit). Another process takes the row over only after that, or at once when the holder is
    /// gone (``ProcessIdentity/isAlive``).
    public var lease: Duration { (attemptTimeout ?? .seconds(840)) + .seconds(60) }

    /// The wait after the `attempt`-th failure (1-based).
    public func delay(afterAttempt attempt: Int) -> Duration {
        let seconds = min(initialDelay.seconds * pow(multiplier, Double(max(0, attempt - 1))), maxDelay.seconds)
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }
}

/// Which backend serves which Postfach: a default and per-Postfach overrides.
public struct BackendSelection: Sendable {
    public let defaultBackend: any PostfachBackend
    public let overrides: [String: any PostfachBackend]

    public init(default defaultBackend: any PostfachBackend, overrides: [String: any PostfachBackend] = [:]) {
        self.defaultBackend = defaultBackend
        self.overrides = overrides
    }

    public func backend(for postfach: String) -> any PostfachBackend { overrides[postfach] ?? defaultBackend }
}

/// validate → route → deliver, with every step recorded in the ledger first.
public struct Pipeline: Sendable {
    public let validator: Validator
    public let router: Router
    public let backends: BackendSelection
    public let ledger: Ledger
    public let spool: Spool
    public let retry: RetryPolicy
    let logger: Logger
    /// Rows the pipelines of this process are working on right now (so that `recover` can tell this process's own
    /// stranded rows, left by an error in a long-running process, from the ones in progress). Process-wide, since
    /// every pipeline of the process writes rows under the same owner identity; ids of another ledger that happen
    /// to be equal only delay a take-over, never cause one.
    var inFlight: InFlight { InFlight.shared }

    public init(validator: Validator, router: Router, backends: BackendSelection, ledger: Ledger, spool: Spool,
                retry: RetryPolicy = RetryPolicy(), logger: Logger = Logger(label: "amtsbote.pipeline")) {
        self.validator = validator
        self.router = router
        self.backends = backends
        self.ledger = ledger
        self.spool = spool
        self.retry = retry
        self.logger = logger
    }

    /// Takes one file: records it, spools and validates it, routes it, and makes the first delivery attempt.
    /// Returns the ledger row as it stands afterwards.
    public func submit(file path: String) async throws -> Submission {
        var submission = try ledger.recordReceived(source: path, at: Date())
        inFlight.insert(submission.id)
        defer { inFlight.remove(submission.id) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            submission.state = .abandoned
            submission.reasonCode = "input.unreadable"
            submission.reason = "cannot open: \(reason)"
            try ledger.save(submission)
            return submission
        }
        defer { close(fd) }
        return try await submit(fileDescriptor: fd, named: path, recorded: submission)
    }

    /// Takes one stream (standard input, a socket) to its end.
    public func submit(fileDescriptor fd: Int32, named name: String) async throws -> Submission {
        let submission = try ledger.recordReceived(source: name, at: Date())
        inFlight.insert(submission.id)
        defer { inFlight.remove(submission.id) }
        return try await submit(fileDescriptor: fd, named: name, recorded: submission)
    }

    private func submit(fileDescriptor fd: Int32, named name: String, recorded: Submission) async throws -> Submission {
        var submission = recorded
        let intake: Intake
        do {
            intake = try spool.take(fileDescriptor: fd, named: name, submission: submission.id ?? 0, validator: validator)
        } catch {
            submission.state = .abandoned
            submission.reasonCode = (error as? XoevValidation.ValidationError)?.code.rawValue ?? "spool.failed"
            submission.reason = "\(error)"
            try ledger.save(submission)
            logger.error("intake failed", metadata: ["submission": "\(submission.id ?? 0)", "code": "\(submission.reasonCode ?? "")"])
            return submission
        }
        submission.spoolPath = intake.path.path
        submission.payloadSHA256 = intake.sha256
        submission.payloadSize = intake.size
        submission.schemaId = intake.report.schema
        let report = intake.report
        guard report.isValid else {
            let first = report.errors.first
            submission.state = .rejected
            submission.reasonCode = first?.code ?? "validation.incomplete"
            submission.reason = first.map { Self.place(of: $0) } ?? "invalid"
            try ledger.save(submission)
            logger.info("rejected", metadata: ["submission": "\(submission.id ?? 0)", "code": "\(submission.reasonCode ?? "")",
                                               "line": "\(first?.line ?? 0)", "path": "\(first?.path ?? "")"])
            return submission
        }
        let captured = report.captured
        submission.messageId = captured["messageId"].flatMap { Delivery.isValidID($0) ? $0 : nil }
        submission.deliveryId = submission.messageId ?? "sha256-\(intake.sha256)"
        let keys = RoutingKeys(captured: captured)
        submission.routingKeys = String(decoding: try JSONEncoder().encode(StoredKeys(keys)), as: UTF8.self)
        submission.state = .validated
        try ledger.save(submission)
        return try await routeAndDeliver(submission)
    }

    /// "line 3, column 7 (/p:a/p:b)": where a finding is, without its message (which may quote personal data).
    public static func place(of finding: Diagnostic) -> String {
        "line \(finding.line), column \(finding.column)" + (finding.path.isEmpty ? "" : " (\(finding.path))")
    }

    /// Routes a validated submission, claims its delivery id, and makes one delivery attempt.
    func routeAndDeliver(_ validated: Submission) async throws -> Submission {
        var submission = validated
        let keys = submission.routingKeys.flatMap { try? JSONDecoder().decode(StoredKeys.self, from: Data($0.utf8)) }?.keys
            ?? RoutingKeys()
        switch router.route(keys, at: submission.receivedAt) {
        case .failure(let unroutable):
            submission.state = .unroutable
            submission.reasonCode = unroutable.code
            submission.reason = unroutable.message
            try ledger.save(submission)
            logger.info("unroutable", metadata: ["submission": "\(submission.id ?? 0)", "code": "\(unroutable.code)"])
            return submission
        case .success(let decision):
            submission.postfach = decision.postfach.value
            submission.routing = String(decoding: try JSONEncoder().encode(RoutingSummary(decision)), as: UTF8.self)
        }
        submission = try ledger.claimAndQueue(submission, leaseUntil: Date().addingTimeInterval(retry.lease.seconds))
        guard submission.state == .queued else { return submission }
        return try await attempt(submission)
    }

    /// One delivery attempt of a row this process holds the lease of; the outcome is saved (and the lease
    /// released) before this returns.
    func attempt(_ queued: Submission) async throws -> Submission {
        var submission = queued
        submission.owner = nil
        guard let postfach = submission.postfach, let deliveryId = submission.deliveryId, let spoolPath = submission.spoolPath,
              let sha = submission.payloadSHA256, let size = submission.payloadSize else {
            submission.state = .dead
            submission.reasonCode = "ledger.incomplete"
            submission.reason = "the ledger row lacks what a delivery needs"
            return try finish(submission)
        }
        var metadata = ["submission": "\(submission.id ?? 0)", "schema": submission.schemaId ?? ""]
        if let routing = submission.routing { metadata["routing"] = routing }
        let delivery = Delivery(id: deliveryId, postfach: postfach, payload: URL(fileURLWithPath: spoolPath),
                                payloadSHA256: sha, payloadSize: size, receivedAt: submission.receivedAt, metadata: metadata)
        submission.attempts += 1
        do {
            let backend = backends.backend(for: postfach)
            let receipt = try await Self.deliver(delivery, to: backend, within: retry.attemptTimeout)
            submission.state = .delivered
            submission.receipt = String(decoding: try JSONEncoder.receipts.encode(receipt), as: UTF8.self)
            submission.reasonCode = nil
            submission.reason = nil
            submission.nextAttemptAt = nil
            logger.info("delivered", metadata: ["submission": "\(submission.id ?? 0)", "postfach": "\(postfach)"])
        } catch {
            let failure = error as? PostfachError
                ?? PostfachError(code: error is CancellationError ? .cancelled : .unavailable, message: "\(error)")
            submission.reasonCode = failure.code.rawValue
            submission.reason = failure.message
            if failure.isRetryable && submission.attempts < retry.maxAttempts {
                submission.state = .queued
                submission.nextAttemptAt = Date().addingTimeInterval(retry.delay(afterAttempt: submission.attempts).seconds)
            } else {
                submission.state = .dead
                submission.nextAttemptAt = nil
            }
            logger.warning("delivery failed", metadata: ["submission": "\(submission.id ?? 0)", "postfach": "\(postfach)",
                                                         "code": "\(failure.code)", "attempt": "\(submission.attempts)"])
        }
        return try finish(submission)
    }

    /// Saves an attempt's outcome if this process still holds the row's lease; otherwise the row was taken over
    /// (the attempt outlived its lease), the late outcome is logged and changes nothing, and the row is returned
    /// as it stands.
    private func finish(_ submission: Submission) throws -> Submission {
        if try ledger.finishAttempt(submission) { return submission }
        logger.warning("late outcome after a lost lease: not recorded", metadata: [
            "submission": "\(submission.id ?? 0)", "state": "\(submission.state.rawValue)"])
        return try submission.id.flatMap { try ledger.submission($0) } ?? submission
    }

    /// One `deliver` call, abandoned after `limit`: a backend that hangs (a server that never answers, a stuck
    /// mount) must not hold up the queue. The call is cancelled and left to end on its own; should it still
    /// complete, the next attempt finds the delivery present (backends are idempotent per id) and nothing is doubled.
    static func deliver(_ delivery: Delivery, to backend: any PostfachBackend, within limit: Duration?) async throws -> Receipt {
        guard let limit else { return try await backend.deliver(delivery) }
        let call = Task { try await backend.deliver(delivery) }
        let outcome = FirstOutcome<Receipt>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                outcome.install(continuation)
                // A Dispatch timer, not Task.sleep: it fires even when a misbehaving backend blocks the threads of
                // Swift's cooperative pool.
                let timer = DispatchWorkItem {
                    if outcome.resume(with: .failure(PostfachError(code: .timeout,
                                                                   message: "no answer within \(limit.seconds) s"))) {
                        call.cancel()
                    }
                }
                DispatchQueue.global().asyncAfter(deadline: .now() + limit.seconds, execute: timer)
                Task {
                    let result = await call.result
                    timer.cancel()
                    outcome.resume(with: result)
                }
            }
        } onCancel: {
            call.cancel()
        }
    }

    /// After a crash: intakes that were cut off become `abandoned`; validated ones are routed; queued ones wait
    /// for ``deliverDue(at:)``. Only work whose owning process is gone is touched, so this is safe while other
    /// processes (another `submit`, a `retry`) work on the same ledger.
    public func recover() async throws -> [Submission] {
        var resumed: [Submission] = []
        for observed in try ledger.submissions(states: [.received]) {
            guard var submission = try adopt(observed) else { continue }
            spool.removeIncompleteFile(of: submission.id ?? 0)
            submission.state = .abandoned
            submission.owner = nil
            submission.reasonCode = "intake.interrupted"
            submission.reason = "the process stopped before the payload was complete; the sender must resend"
            try ledger.save(submission)
            resumed.append(submission)
        }
        // Temporary spool files of rows no running intake owns. Rows newer than `newest` may be starting now: left.
        let newest = try ledger.newestID()
        let reading = Set(try ledger.submissions(states: [.received]).compactMap(\.id))
        spool.removeIncompleteFiles(upTo: newest, except: reading)
        for observed in try ledger.submissions(states: [.validated]) {
            guard let submission = try adopt(observed) else { continue }
            inFlight.insert(submission.id)
            defer { inFlight.remove(submission.id) }
            resumed.append(try await routeAndDeliver(submission))
        }
        return resumed
    }

    /// Takes over a row whose owner is gone, or one of this process's own that no call is working on any more
    /// (an error left it behind).
    private func adopt(_ observed: Submission) throws -> Submission? {
        let stranded = observed.owner == ledger.identity.description && !inFlight.contains(observed.id)
        return try ledger.adopt(observed, evenIfOwnerRuns: stranded)
    }

    /// Delivers every queued submission whose attempt is due (or whose lease holder is gone), taking each row's
    /// lease first so that no two processes deliver one row at once.
    public func deliverDue(at date: Date = Date()) async throws -> [Submission] {
        var results: [Submission] = []
        for observed in try ledger.due(at: date) {
            try Task.checkCancellation()
            guard let leased = try ledger.lease(observed, now: date, until: Date().addingTimeInterval(retry.lease.seconds)) else {
                continue
            }
            results.append(try await attempt(leased))
        }
        return results
    }

    /// Delivers due submissions until none is queued, waiting for backoff, at most `limit` in total.
    public func drain(waitingAtMost limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while true {
            _ = try await deliverDue()
            guard let next = try ledger.nextAttempt() else { return }
            let wait = max(0, next.timeIntervalSinceNow)
            guard ContinuousClock.now + .milliseconds(Int64(wait * 1000)) <= deadline else { return }
            try await Task.sleep(for: .milliseconds(Int64(wait * 1000) + 5))
        }
    }

    /// Puts dead (or still queued) submissions back in the queue with a fresh attempt count. A row another running
    /// process is delivering right now is left to it.
    public func requeue(_ ids: [Int64]?) throws -> [Submission] {
        let candidates = try ledger.submissions(states: [.dead, .queued]).filter { ids == nil || ids!.contains($0.id ?? -1) }
        var requeued: [Submission] = []
        for observed in candidates {
            if observed.state == .queued, let owner = observed.owner, owner != ledger.identity.description,
               Ledger.ownerIsAlive(owner) {
                requeued.append(observed)
                continue
            }
            if let submission = try ledger.requeue(observed) { requeued.append(submission) }
        }
        return requeued
    }
}

/// The routing keys as stored in the ledger.
struct StoredKeys: Codable {
    var ags, ars, leistung, behoerdenkennung, behoerdenkennungPraefix: String?

    init(_ keys: RoutingKeys) {
        ags = keys.ags
        ars = keys.ars
        leistung = keys.leistung
        behoerdenkennung = keys.behoerdenkennung
        behoerdenkennungPraefix = keys.behoerdenkennungPraefix
    }

    var keys: RoutingKeys {
        RoutingKeys(ags: ags, ars: ars, leistung: leistung, behoerdenkennung: behoerdenkennung,
                    behoerdenkennungPraefix: behoerdenkennungPraefix)
    }
}

/// The routing decision as stored in the ledger and shown to users.
public struct RoutingSummary: Codable, Sendable, Hashable {
    public var postfach: String
    public var level: String
    public var area: String
    public var service: String?
    public var rule: String
    public var table: String

    public init(_ decision: RoutingDecision) {
        postfach = decision.postfach.value
        level = decision.rule.level.description
        area = decision.area
        service = decision.service
        rule = "\(decision.table):\(decision.rule.line)"
        table = "\(decision.table) (valid from \(decision.tableValidFrom))"
    }
}

extension JSONEncoder {
    static var receipts: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

extension Duration {
    var seconds: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// Resumes one continuation with whichever outcome arrives first (a backend's answer or a timeout).
final class FirstOutcome<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Value, any Error>?
    private var pending: Result<Value, any Error>?
    private var done = false

    func install(_ continuation: CheckedContinuation<Value, any Error>) {
        lock.lock()
        if let pending {
            lock.unlock()
            continuation.resume(with: pending)
            return
        }
        self.continuation = continuation
        lock.unlock()
    }

    /// `true` when this outcome was the first.
    @discardableResult
    func resume(with result: Result<Value, any Error>) -> Bool {
        lock.lock()
        guard !done else { lock.unlock(); return false }
        done = true
        guard let continuation else { pending = result; lock.unlock(); return true }
        self.continuation = nil
        lock.unlock()
        continuation.resume(with: result)
        return true
    }
}

/// The ids of the rows a pipeline is working on, shared by its concurrent calls.
final class InFlight: @unchecked Sendable {
    static let shared = InFlight()
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var ids: Set<Int64> = []

    func insert(_ id: Int64?) {
        guard let id else { return }
        lock.lock(); defer { lock.unlock() }
        ids.insert(id)
    }

    func remove(_ id: Int64?) {
        guard let id else { return }
        lock.lock(); defer { lock.unlock() }
        ids.remove(id)
    }

    func contains(_ id: Int64?) -> Bool {
        guard let id else { return false }
        lock.lock(); defer { lock.unlock() }
        return ids.contains(id)
    }
}
