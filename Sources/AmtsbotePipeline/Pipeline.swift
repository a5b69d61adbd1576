import Foundation
import Logging
import XoevTransform
import Metrics
import Postfach
import XoevRouting
import XoevValidation

/// How deliveries are leased and retried: capped exponential backoff with full jitter, then dead letter.
public struct RetryPolicy: Sendable, Hashable {
    public var maxAttempts: Int
    public var initialDelay: Duration
    public var multiplier: Double
    public var maxDelay: Duration
    /// Each wait is drawn uniformly between zero and the capped exponential delay ("full jitter"), so that failed
    /// deliveries of many rows do not come back at the same moment. `false`: the capped delay itself.
    public var fullJitter: Bool
    /// How long one delivery attempt may take before it counts as failed (`postfach.timeout`, retried); `nil`: no limit.
    public var attemptTimeout: Duration?
    /// How long a claimed row stays leased without a heartbeat. Another process takes it over after that.
    public var lease: Duration
    /// How often a running attempt extends its lease (to now + ``lease``); `nil`: never (the lease must then
    /// outlast the attempt).
    public var heartbeat: Duration?
    /// How long after a delivery, and then between two checks, the receiving side is asked for its answer
    /// (FIT-Connect's accept or reject) while none has come.
    public var confirmationCheck: Duration
    /// How long after a delivery its receiver may take to answer; a row still without an answer then is marked
    /// `overdue` (`postfach.confirmation-overdue`) and no longer asked about.
    public var confirmationDeadline: Duration

    public init(maxAttempts: Int = 5, initialDelay: Duration = .seconds(1), multiplier: Double = 2,
                maxDelay: Duration = .seconds(60), fullJitter: Bool = true, attemptTimeout: Duration? = .seconds(120),
                lease: Duration = .seconds(30), heartbeat: Duration? = .seconds(10),
                confirmationCheck: Duration = .seconds(300), confirmationDeadline: Duration = .seconds(30 * 86_400)) {
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.multiplier = multiplier
        self.maxDelay = maxDelay
        self.fullJitter = fullJitter
        self.attemptTimeout = attemptTimeout
        self.lease = lease
        self.heartbeat = heartbeat
        self.confirmationCheck = confirmationCheck
        self.confirmationDeadline = confirmationDeadline
    }

    /// The capped exponential delay after the `attempt`-th failure (1-based): the upper bound of the wait.
    public func delay(afterAttempt attempt: Int) -> Duration {
        let seconds = min(initialDelay.seconds * pow(multiplier, Double(max(0, attempt - 1))), maxDelay.seconds)
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// The wait before the next attempt after the `attempt`-th failure: full jitter over ``delay(afterAttempt:)``,
    /// and never shorter than what the receiving side asked for (`retryAfter`).
    public func wait(afterAttempt attempt: Int, retryAfter: Duration? = nil) -> Duration {
        let cap = delay(afterAttempt: attempt)
        let drawn = fullJitter ? Duration.milliseconds(Int64.random(in: 0...max(0, Int64(cap.seconds * 1000)))) : cap
        return max(drawn, retryAfter ?? .zero)
    }
}

/// Which backend serves which Postfach: a default and per-Postfach overrides.
public struct BackendSelection: Sendable {
    public let defaultBackend: any PostfachBackend
    public let overrides: [String: any PostfachBackend]
    /// Backends configured besides these (serving no Postfach now), so that ``shutdown()`` releases them too.
    let others: [any PostfachBackend]

    public init(default defaultBackend: any PostfachBackend, overrides: [String: any PostfachBackend] = [:],
                others: [any PostfachBackend] = []) {
        self.defaultBackend = defaultBackend
        self.overrides = overrides
        self.others = others
    }

    public func backend(for postfach: String) -> any PostfachBackend { overrides[postfach] ?? defaultBackend }

    /// The backend that asks about an earlier delivery by a backend of `kind`: the Postfach's own when it is of that
    /// kind (the configuration may have moved the Postfach since), else the first configured one of that kind.
    public func backend(for postfach: String, kind: String) -> (any PostfachBackend)? {
        let own = backend(for: postfach)
        if own.kind == kind { return own }
        return ([defaultBackend] + overrides.values.map { $0 } + others).first { $0.kind == kind }
    }

    /// Lets every backend release what it holds (connection pools); once, when the process is done with them.
    public func shutdown() async {
        var seen = Set<ObjectIdentifier>()
        for backend in [defaultBackend] + overrides.values.map({ $0 }) + others {
            // The same backend object may serve several Postfächer: shut down once.
            if type(of: backend) is AnyObject.Type, !seen.insert(ObjectIdentifier(backend as AnyObject)).inserted { continue }
            await backend.shutdown()
        }
    }
}

/// validate → route → queue → deliver, with every step recorded in the ledger first.
public struct Pipeline: Sendable {
    public let validator: Validator
    public let router: Router
    public let backends: BackendSelection
    public let ledger: any LedgerStore
    public let spool: Spool
    public let payloads: any PayloadStore
    public let retry: RetryPolicy
    /// Whether an intake makes the first delivery attempt itself (the embedded default). `false`: it only queues,
    /// and workers (``DeliveryWorker``, `amtsbote worker`) deliver.
    public let deliversOnIntake: Bool
    /// Transformations between routing and delivery (first matching rule wins); empty: payloads travel unchanged.
    public let transformations: [TransformationRule]
    let logger: Logger
    /// Rows the pipelines of this process are working on right now (so that `recover` can tell this process's own
    /// stranded rows, left by an error in a long-running process, from the ones in progress). Process-wide, since
    /// every pipeline of the process writes rows under the same owner identity; ids of another ledger that happen
    /// to be equal only delay a take-over, never cause one.
    var inFlight: InFlight { InFlight.shared }

    public init(validator: Validator, router: Router, backends: BackendSelection, ledger: any LedgerStore, spool: Spool,
                payloads: any PayloadStore = FilesystemPayloadStore(), retry: RetryPolicy = RetryPolicy(),
                deliversOnIntake: Bool = true, transformations: [TransformationRule] = [],
                logger: Logger = Logger(label: "amtsbote.pipeline")) {
        self.validator = validator
        self.router = router
        self.backends = backends
        self.ledger = ledger
        self.spool = spool
        self.payloads = payloads
        self.retry = retry
        self.deliversOnIntake = deliversOnIntake
        self.transformations = transformations
        self.logger = logger
    }

    /// Takes one file: records it, spools and validates it, routes it, and queues it (making the first delivery
    /// attempt when ``deliversOnIntake``). Returns the ledger row as it stands afterwards.
    public func submit(file path: String) async throws -> Submission {
        let submission = try await ledger.recordReceived(source: path, at: Date())
        inFlight.insert(submission.id)
        defer { inFlight.remove(submission.id) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            return try await keep(submission, as: .abandoned, code: "input.unreadable", reason: "cannot open: \(reason)",
                                  from: .received)
        }
        defer { closeDescriptor(fd) }
        return try await submit(fileDescriptor: fd, named: path, recorded: submission)
    }

    /// Takes one stream (standard input, a socket) to its end.
    public func submit(fileDescriptor fd: Int32, named name: String) async throws -> Submission {
        let submission = try await ledger.recordReceived(source: name, at: Date())
        inFlight.insert(submission.id)
        defer { inFlight.remove(submission.id) }
        return try await submit(fileDescriptor: fd, named: name, recorded: submission)
    }

    /// Writes a row this process owns (compare-and-set on `expected`); a row another process took over meanwhile
    /// is an error: that process now decides.
    private func save(_ submission: Submission, from expected: SubmissionState) async throws -> Submission {
        guard try await ledger.update(submission, from: expected) else {
            throw LedgerError(code: "ledger.lost-row",
                              message: "submission \(submission.id ?? 0) was taken over by another process")
        }
        return submission
    }

    private func submit(fileDescriptor fd: Int32, named name: String, recorded: Submission) async throws -> Submission {
        let intake: Intake
        do {
            intake = try spool.take(fileDescriptor: fd, named: name, submission: recorded.id ?? 0, validator: validator)
        } catch {
            return try await abandon(recorded, after: error)
        }
        return try await accept(intake, recorded: recorded)
    }

    /// Starts taking one submission that arrives in pieces (an HTTP body): records it as `received` with its
    /// origin, then keeps and validates each piece as it comes (see ``IncomingSubmission``).
    public func receive(named name: String, origin: IntakeOrigin) async throws -> IncomingSubmission {
        let submission = try await ledger.recordReceived(source: name, at: Date(), origin: origin)
        inFlight.insert(submission.id)
        do {
            let writer = try spool.begin(named: name, submission: submission.id ?? 0, validator: validator,
                                         inMemoryLimit: payloads.inMemoryLimit)
            return IncomingSubmission(recorded: submission, writer: writer, pipeline: self)
        } catch {
            defer { inFlight.remove(submission.id) }
            _ = try await abandon(submission, after: error)
            throw error
        }
    }

    /// Ends an intake that could not be read whole: `abandoned` with the error's code; the sender must resend.
    func abandon(_ recorded: Submission, after error: any Error) async throws -> Submission {
        let code = (error as? XoevValidation.ValidationError)?.code.rawValue ?? (error as? LedgerError)?.code ?? "spool.failed"
        return try await abandon(recorded, code: code, reason: "\(error)")
    }

    func abandon(_ recorded: Submission, code: String, reason: String) async throws -> Submission {
        let id = recorded.id ?? 0
        try? await payloads.removeIncomplete(submission: id)
        spool.removeIncompleteFile(of: id)
        logger.error("intake failed", metadata: ["submission": "\(id)", "code": "\(code)"])
        return try await keep(recorded, as: .abandoned, code: code, reason: reason, from: .received)
    }

    /// The payload is kept in the spool: records the verdict, then routes and queues a valid submission.
    func accept(_ intake: Intake, recorded: Submission, policy: IntakePolicy = IntakePolicy()) async throws -> Submission {
        var submission = recorded
        let id = submission.id ?? 0
        do {
            switch intake.payload {
            case .file(let spooled): submission.payloadLocation = try await payloads.keep(spooled: spooled, submission: id)
            case .bytes(let bytes): submission.payloadLocation = try await payloads.keep(bytes: bytes, submission: id)
            }
        } catch {
            return try await abandon(recorded, after: error)
        }
        submission.payloadSHA256 = intake.sha256
        submission.payloadSize = intake.size
        submission.schemaId = intake.report.schema
        let report = intake.report
        submission.findings = report.diagnostics.isEmpty ? "[]" : String(decoding: try JSONEncoder().encode(report.diagnostics.map {
            StoredFinding(code: $0.code, severity: $0.severity.rawValue, line: $0.line, column: $0.column, path: $0.path)
        }), as: UTF8.self)
        guard report.isValid else {
            let first = report.errors.first
            let code = first?.code ?? "validation.incomplete"
            logger.info("rejected", metadata: ["submission": "\(id)", "code": "\(code)",
                                               "line": "\(first?.line ?? 0)", "path": "\(first?.path ?? "")"])
            return try await keep(submission, as: .rejected, code: code,
                                  reason: first.map { Self.place(of: $0) } ?? "invalid", from: .received)
        }
        if let schemas = policy.schemas, !schemas.contains(submission.schemaId ?? "") {
            logger.info("refused", metadata: ["submission": "\(id)", "code": "service.schema-forbidden"])
            return try await keep(submission, as: .rejected, code: "service.schema-forbidden",
                                  reason: "the client may not submit documents of schema \(submission.schemaId ?? "(none)")",
                                  from: .received)
        }
        let captured = report.captured
        submission.messageId = captured["messageId"].flatMap { Delivery.isValidID($0) ? $0 : nil }
        submission.deliveryId = submission.messageId ?? "sha256-\(intake.sha256)"
        let keys = RoutingKeys(captured: captured)
        submission.routingKeys = String(decoding: try JSONEncoder().encode(StoredKeys(keys)), as: UTF8.self)
        submission.state = .validated
        // Verdict, route and queueing in one write: the row goes from `received` straight to the queue (a crash before
        // it leaves a `received` row, abandoned by recovery like any interrupted intake: no 202 was sent).
        return try await routeAndQueue(submission, policy: policy, from: .received)
    }

    /// Ends a row of this process in a kept state (`rejected`, `unroutable`, `abandoned`) with its reason.
    private func keep(_ row: Submission, as state: SubmissionState, code: String, reason: String,
                      from expected: SubmissionState) async throws -> Submission {
        var submission = row
        submission.state = state
        submission.owner = nil
        submission.reasonCode = code
        submission.reason = reason
        return try await save(submission, from: expected)
    }

    /// "line 3, column 7 (/p:a/p:b)": where a finding is, without its message (which may quote personal data).
    public static func place(of finding: Diagnostic) -> String {
        "line \(finding.line), column \(finding.column)" + (finding.path.isEmpty ? "" : " (\(finding.path))")
    }

    /// Routes a validated submission and queues it under its delivery id; makes the first delivery attempt when
    /// ``deliversOnIntake``.
    func routeAndQueue(_ validated: Submission, policy: IntakePolicy = IntakePolicy(),
                       from expected: SubmissionState = .validated) async throws -> Submission {
        var submission = validated
        let keys = submission.routingKeys.flatMap { try? JSONDecoder().decode(StoredKeys.self, from: Data($0.utf8)) }?.keys
            ?? RoutingKeys()
        switch router.route(keys, at: submission.receivedAt) {
        case .failure(let unroutable):
            logger.info("unroutable", metadata: ["submission": "\(submission.id ?? 0)", "code": "\(unroutable.code)"])
            return try await keep(submission, as: .unroutable, code: unroutable.code, reason: unroutable.message,
                                  from: expected)
        case .success(let decision) where !(policy.postfaecher?.contains(decision.postfach.value) ?? true):
            logger.info("refused", metadata: ["submission": "\(submission.id ?? 0)", "code": "service.postfach-forbidden"])
            return try await keep(submission, as: .rejected, code: "service.postfach-forbidden",
                                  reason: "the client may not submit to Postfach \(decision.postfach.value)", from: expected)
        case .success(let decision):
            submission.postfach = decision.postfach.value
            submission.routing = String(decoding: try JSONEncoder().encode(RoutingSummary(decision)), as: UTF8.self)
        }
        submission = try await ledger.claimAndQueue(submission, leaseFor: deliversOnIntake ? retry.lease : nil,
                                                   from: expected)
        guard submission.state == .running else { return submission }
        return try await attempt(submission)
    }

    /// One delivery attempt of a row this process claimed (`running` under its lease token). The lease is extended
    /// by heartbeat while the backend works; the outcome is recorded fenced by the token before this returns. A
    /// late outcome (the lease was lost and another process took the row over) is logged and changes nothing.
    public func attempt(_ leased: Submission) async throws -> Submission {
        var submission = leased
        let id = submission.id ?? 0
        guard let postfach = submission.postfach, let deliveryId = submission.deliveryId,
              let location = submission.payloadLocation, let sha = submission.payloadSHA256,
              let size = submission.payloadSize else {
            submission.state = .dead
            submission.reasonCode = "ledger.incomplete"
            submission.reason = "the ledger row lacks what a delivery needs"
            return try await finish(submission)
        }
        // The portal's metadata goes as the portal sent it (a JSON object), for the receiving side.
        let leika = submission.routingKeys.flatMap { try? JSONDecoder().decode(StoredKeys.self, from: Data($0.utf8)) }?.leistung
        let metadata = DeliveryMetadata(submission: id, schemaId: submission.schemaId, leikaKey: leika,
                                        routing: submission.routing, portal: submission.portalMetadata)
        let lease = LeaseWatch(claimedFor: retry.lease)
        let started = ContinuousClock.now
        defer {
            // Metrics of the attempt (swift-metrics; a no-op unless the process bootstrapped a backend).
            let outcome = submission.state == .delivered ? "delivered" : submission.state == .dead ? "dead" : "retry"
            Counter(label: "amtsbote_delivery_attempts_total", dimensions: [("outcome", outcome)]).increment()
            Metrics.Timer(label: "amtsbote_delivery_duration_seconds", preferredDisplayUnit: .seconds)
                .recordNanoseconds((ContinuousClock.now - started).nanoseconds)
            if submission.state == .dead { Counter(label: "amtsbote_dead_letters_total").increment() }
        }
        let heartbeat = startHeartbeat(for: submission, watch: lease)
        defer { heartbeat?.cancel() }
        do {
            let backend = backends.backend(for: postfach)
            let payloads = payloads, receivedAt = submission.receivedAt, ledger = ledger, leased = submission
            // A backend's reference (a server-assigned id) is recorded under this attempt's lease before the
            // backend's next step; an attempt that lost its lease records nothing and goes no further.
            let recorded = RecordedReference()
            let context = DeliveryContext(attempt: submission.attempts, reference: submission.externalReference) { reference in
                // The ledger checks the lease's end itself; a lease known lost (the heartbeat said so) goes no further.
                guard lease.holds(after: .zero), try await ledger.recordReference(leased, reference: reference) else {
                    throw PostfachError(code: .cancelled, message: "the lease was lost before the reference was recorded")
                }
                recorded.value = reference
            }
            defer { if let reference = recorded.value { submission.externalReference = reference } }
            // The whole attempt, reading the payload included, is abandoned after the attempt's limit: a backend
            // that hangs (a server that never answers, a stuck mount) or a payload read that hangs must not hold the
            // row. The abandoned call is cancelled and left to end on its own; should it still complete, the next
            // attempt finds the delivery present (backends are idempotent per id) and nothing is doubled.
            let limit = retry.attemptTimeout
            let rule = transformations.rule(postfach: postfach, schemaId: submission.schemaId)
            let scratch = spool.directory
            let parameters = TransformationRule.parameters(
                deliveryId: deliveryId, receivedAt: receivedAt, postfach: postfach, schemaId: submission.schemaId,
                submission: id, leika: leika,
                ags: submission.routingKeys.flatMap { try? JSONDecoder().decode(StoredKeys.self, from: Data($0.utf8)) }?.ags)
            let (receipt, transformed) = try await withDeadline(limit, onTimeout: {
                PostfachError(code: .timeout, message: "no answer within \(limit?.seconds ?? 0) s")
            }) {
                try await payloads.withPayload(location) { payload in
                    var delivery = Delivery(id: deliveryId, postfach: postfach, payload: payload, payloadSHA256: sha,
                                            payloadSize: size, receivedAt: receivedAt, metadata: metadata)
                    guard let rule else { return (try await backend.deliver(delivery, context: context), nil as TransformationRecord?) }
                    // The payload as the Postfach expects it; the original stays in the store as received.
                    let staged = try Self.transform(payload, with: rule, parameters: parameters, originalSHA256: sha, scratch: scratch)
                    defer { staged.output.remove() }
                    delivery.payload = .file(staged.output.file)
                    delivery.payloadSHA256 = staged.record.outputSHA256
                    delivery.payloadSize = staged.record.outputSize
                    delivery.metadata.extra["originalSHA256"] = sha
                    delivery.metadata.extra["transformation"] = rule.name
                    return (try await backend.deliver(delivery, context: context), staged.record)
                }
            }
            submission.state = .delivered
            submission.receipt = try Self.storedReceipt(receipt, transformation: transformed)
            if receipt.awaitsConfirmation {
                submission.confirmation = .pending
                submission.confirmationDueAt = Date().addingTimeInterval(retry.confirmationCheck.seconds)
            }
            submission.reasonCode = nil
            submission.reason = nil
            submission.nextAttemptAt = nil
            logger.info("delivered", metadata: ["submission": "\(id)", "postfach": "\(postfach)"])
        } catch let failure as TransformError {
            // Kept with its reason and never delivered half-transformed; only a run stopped by its time limit is
            // tried again.
            submission.reasonCode = failure.code.rawValue
            submission.reason = String(failure.description.prefix(2000))
            if failure.isTransient && submission.attempts < retry.maxAttempts {
                submission.state = .queued
                submission.nextAttemptAt = Date().addingTimeInterval(retry.wait(afterAttempt: submission.attempts).seconds)
            } else {
                submission.state = .dead
                submission.nextAttemptAt = nil
            }
            logger.warning("transformation failed", metadata: ["submission": "\(id)", "postfach": "\(postfach)",
                                                              "code": "\(failure.code)", "attempt": "\(submission.attempts)"])
        } catch {
            let failure = error as? PostfachError
                ?? PostfachError(code: error is CancellationError ? .cancelled : .unavailable, message: "\(error)")
            submission.reasonCode = failure.code.rawValue
            submission.reason = failure.message
            if failure.isRetryable && submission.attempts < retry.maxAttempts {
                submission.state = .queued
                let wait = retry.wait(afterAttempt: submission.attempts, retryAfter: failure.retryAfter)
                submission.nextAttemptAt = Date().addingTimeInterval(wait.seconds)
            } else {
                submission.state = .dead
                submission.nextAttemptAt = nil
            }
            logger.warning("delivery failed", metadata: ["submission": "\(id)", "postfach": "\(postfach)",
                                                         "code": "\(failure.code)", "attempt": "\(submission.attempts)"])
        }
        // The heartbeat goes on while the outcome is recorded: a ledger that is briefly unreachable (a restart) is
        // waited for as long as the lease is known to hold.
        return try await finish(submission, lease: lease)
    }

    /// Extends the lease of `leased` every ``RetryPolicy/heartbeat`` until cancelled or the lease is found lost,
    /// noting each confirmation in `watch`.
    private func startHeartbeat(for leased: Submission, watch: LeaseWatch) -> Task<Void, Never>? {
        guard let interval = retry.heartbeat else { return nil }
        let ledger = ledger, lease = retry.lease, logger = logger
        return Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { return }
                let asked = ContinuousClock.now
                do {
                    if try await ledger.extendLeases([leased], by: lease).isEmpty {
                        watch.lost()
                        logger.warning("lease lost while delivering", metadata: ["submission": "\(leased.id ?? 0)",
                                                                                 "code": "ledger.lease-lost"])
                        return
                    }
                    watch.confirmed(at: asked, for: lease)
                } catch {
                    // The ledger is unreachable: the lease may expire; the fenced finish decides.
                    logger.warning("heartbeat failed", metadata: ["submission": "\(leased.id ?? 0)",
                                                                  "code": "ledger.unavailable"])
                }
            }
        }
    }

    /// Records an attempt's outcome if the row is still leased under the token it was claimed with; otherwise
    /// the late outcome is logged and changes nothing, and the row is returned as it stands.
    private func finish(_ outcome: Submission, lease: LeaseWatch? = nil) async throws -> Submission {
        if try await finishRetrying(outcome, lease: lease ?? LeaseWatch(claimedFor: retry.lease)) {
            var saved = outcome
            saved.releaseLease()
            return saved
        }
        logger.warning("late outcome after a lost lease: not recorded", metadata: [
            "submission": "\(outcome.id ?? 0)", "outcome": "\(outcome.state.rawValue)", "code": "ledger.lease-lost"])
        guard let id = outcome.id else { return outcome }
        return try await ledger.submission(id) ?? outcome
    }

    /// Records an outcome, trying again while the ledger is unreachable (a database restart), for as long as the
    /// lease is known to hold: after that another process may have taken the row over, and the fenced write decides.
    private func finishRetrying(_ outcome: Submission, lease: LeaseWatch) async throws -> Bool {
        var pause = Duration.milliseconds(100)
        while true {
            do {
                return try await ledger.finishAttempt(outcome)
            } catch let error as LedgerError where error.code == "ledger.unavailable" && lease.holds(after: pause) {
                logger.warning("ledger unreachable while recording an outcome; trying again",
                               metadata: ["submission": "\(outcome.id ?? 0)", "code": "\(error.code)"])
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(2))
            }
        }
    }

    /// After a crash: intakes that were cut off become `abandoned`; `validated` ones (earlier versions wrote that
    /// state between verdict and queueing) are routed and queued; running rows whose owner on this machine is gone
    /// go back to the queue at once, and rows whose lease expired (any owner) too. Only work whose owner is gone is
    /// touched, so this is safe while other processes work on the same ledger.
    public func recover() async throws -> [Submission] {
        var resumed: [Submission] = []
        for observed in try await ledger.submissions(states: [.received], limit: nil) {
            guard var submission = try await adopt(observed) else { continue }
            let id = submission.id ?? 0
            spool.removeIncompleteFile(of: id)
            try await payloads.removeIncomplete(submission: id)
            submission.state = .abandoned
            submission.owner = nil
            submission.reasonCode = "intake.interrupted"
            submission.reason = "the process stopped before the submission was accepted (its payload incomplete, or "
                + "kept but not yet queued); the sender must resend"
            resumed.append(try await save(submission, from: .received))
        }
        // Temporary spool files of rows no running intake owns. Rows newer than `newest` may be starting now: left.
        let newest = try await ledger.newestID()
        let reading = Set(try await ledger.submissions(states: [.received], limit: nil).compactMap(\.id))
        spool.removeIncompleteFiles(upTo: newest, except: reading)
        for observed in try await ledger.submissions(states: [.validated], limit: nil) {
            guard let submission = try await adopt(observed) else { continue }
            inFlight.insert(submission.id)
            defer { inFlight.remove(submission.id) }
            resumed.append(try await routeAndQueue(submission))
        }
        resumed += try await rescueRunning()
        return resumed
    }

    /// ``recover()`` for a process that starts while the ledger may be restarting (a worker): an unreachable
    /// ledger is waited for, `poll` between tries, until the recovery runs or `stop` is signalled. Cancellation
    /// ends the wait.
    public func recoverWaitingForLedger(poll: Duration, until stop: StopSignal) async throws {
        while !stop.isStopped {
            do {
                _ = try await recover()
                return
            } catch let error as LedgerError where error.code == "ledger.unavailable" {
                logger.warning("ledger unreachable during recovery; waiting", metadata: ["code": "\(error.code)"])
                try await Task.sleep(for: poll)
            }
        }
    }

    /// Puts back in the queue running rows whose lease expired, and (before expiry) those whose owner on this
    /// machine is known to be gone.
    @discardableResult
    public func rescueRunning() async throws -> [Submission] {
        var rescued = try await ledger.requeueExpiredLeases()
        for observed in try await ledger.submissions(states: [.running], limit: nil)
        where observed.owner != ledger.identity.description && !ProcessIdentity.ownerIsAlive(observed.owner) {
            if let row = try await ledger.rescue(observed) { rescued.append(row) }
        }
        if !rescued.isEmpty {
            logger.info("leases recovered", metadata: ["count": "\(rescued.count)"])
            Counter(label: "amtsbote_lease_recoveries_total").increment(by: rescued.count)
        }
        return rescued
    }

    /// Takes over a row whose owner is gone, or one of this process's own that no call is working on any more
    /// (an error left it behind).
    private func adopt(_ observed: Submission) async throws -> Submission? {
        let stranded = observed.owner == ledger.identity.description && !inFlight.contains(observed.id)
        return try await ledger.adopt(observed, evenIfOwnerRuns: stranded)
    }

    /// Claims and delivers, one after the other, every queued submission due by `date` (nil: now).
    public func deliverDue(at date: Date? = nil) async throws -> [Submission] {
        var results: [Submission] = []
        var attempted: Set<Int64> = []
        while true {
            try Task.checkCancellation()
            guard let leased = try await ledger.claimDue(limit: 1, dueBy: date, leaseFor: retry.lease).first else {
                return results
            }
            // One attempt per row and call: a row that failed and is due again within `date` waits for the next call.
            guard attempted.insert(leased.id ?? 0).inserted else {
                _ = try await ledger.release(leased)
                return results
            }
            results.append(try await attempt(leased))
        }
    }

    /// Delivers due submissions until none is queued or running, waiting for backoff, at most `limit` in total.
    public func drain(waitingAtMost limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while true {
            try await rescueRunning()
            _ = try await deliverDue()
            guard let next = try await ledger.nextAttempt() else { return }
            let wait = max(0, next.timeIntervalSinceNow)
            guard ContinuousClock.now + .milliseconds(Int64(wait * 1000)) <= deadline else { return }
            await ledger.waitForWork(upTo: .milliseconds(Int64(wait * 1000) + 5))
        }
    }

    /// Releases what the pipeline holds: the backends' connections, then the ledger's.
    public func close() async {
        await backends.shutdown()
        await ledger.close()
    }

    /// Puts dead (or still queued) submissions back in the queue with a fresh attempt count. A row that is
    /// running right now (another process delivers it) is left to it and returned as it stands.
    public func requeue(_ ids: [Int64]?) async throws -> [Submission] {
        let candidates = try await ledger.submissions(states: [.dead, .queued, .running], limit: nil)
            .filter { ids == nil || ids!.contains($0.id ?? -1) }
        var requeued: [Submission] = []
        for observed in candidates {
            if observed.state == .running { requeued.append(observed); continue }
            if let submission = try await ledger.requeue(observed) { requeued.append(submission) }
        }
        return requeued
    }
}

/// `close(2)`, out of reach of the `close()` methods in scope inside the pipeline.
private func closeDescriptor(_ fd: Int32) { close(fd) }

/// The reference a backend recorded during an attempt, for the attempt's own copy of the row.
final class RecordedReference: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var reference: String?

    var value: String? {
        get { lock.lock(); defer { lock.unlock() }; return reference }
        set { lock.lock(); defer { lock.unlock() }; reference = newValue }
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

/// Until when an attempt's lease is known to hold: from the claim, extended by each confirmed heartbeat.
final class LeaseWatch: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var until: ContinuousClock.Instant
    private var isLost = false

    init(claimedFor lease: Duration) { until = .now + lease }

    func confirmed(at asked: ContinuousClock.Instant, for lease: Duration) {
        lock.lock(); defer { lock.unlock() }
        until = max(until, asked + lease)
    }

    func lost() {
        lock.lock(); defer { lock.unlock() }
        isLost = true
    }

    /// Whether the lease still holds `pause` from now.
    func holds(after pause: Duration) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return !isLost && ContinuousClock.now + pause < until
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

/// What one sender may submit: schema ids and Postfächer (nil: any). A valid submission outside them is kept as
/// `rejected` with `service.schema-forbidden` or `service.postfach-forbidden`, never delivered.
public struct IntakePolicy: Sendable, Hashable {
    public var schemas: Set<String>?
    public var postfaecher: Set<String>?

    public init(schemas: Set<String>? = nil, postfaecher: Set<String>? = nil) {
        self.schemas = schemas
        self.postfaecher = postfaecher
    }
}

/// One submission arriving in pieces (``Pipeline/receive(named:origin:)``): ``write(_:)`` keeps and validates each
/// piece as it comes; ``complete()`` records the verdict and routes and queues a valid submission; ``abandon(code:reason:)``
/// ends one that was cut off (the sender must resend; nothing of it is delivered). Exactly one of the two ends it.
/// Not thread-safe: one task feeds it.
public final class IncomingSubmission: @unchecked Sendable {
    /// The ledger row as recorded when the submission started (`received`).
    public let recorded: Submission
    private let writer: SpoolWriter
    private let pipeline: Pipeline
    private var ended = false
    /// The validation report, once ``complete()`` ran.
    public private(set) var report: ValidationReport?

    init(recorded: Submission, writer: SpoolWriter, pipeline: Pipeline) {
        self.recorded = recorded
        self.writer = writer
        self.pipeline = pipeline
    }

    deinit {
        if !ended { writer.cancel() }
    }

    /// Bytes kept so far.
    public var size: Int64 { writer.size }

    /// Keeps and validates one piece. `false` once the input crossed the validator's size limit: the rest is not
    /// wanted, and ``complete()`` records `input.too-large`.
    /// - Throws: ``SpoolError`` when the piece cannot be kept (disk full); then ``abandon(code:reason:)``.
    @discardableResult
    public func write(_ piece: UnsafeRawBufferPointer) throws -> Bool {
        try writer.write(piece)
    }

    /// The body ended: the payload is flushed and kept, the verdict recorded, a valid submission within `policy`
    /// routed and queued. Returns the row as it stands.
    public func complete(policy: IntakePolicy = IntakePolicy()) async throws -> Submission {
        precondition(!ended, "an incoming submission ends once")
        ended = true
        defer { pipeline.inFlight.remove(recorded.id) }
        let intake: Intake
        do {
            intake = try writer.finish()
        } catch {
            return try await pipeline.abandon(recorded, after: error)
        }
        report = intake.report
        return try await pipeline.accept(intake, recorded: recorded, policy: policy)
    }

    /// The body was cut off (the client went away, a limit or a timeout): the row becomes `abandoned` with `code`;
    /// nothing of it is delivered.
    public func abandon(code: String, reason: String) async throws -> Submission {
        precondition(!ended, "an incoming submission ends once")
        ended = true
        writer.cancel()
        defer { pipeline.inFlight.remove(recorded.id) }
        return try await pipeline.abandon(recorded, code: code, reason: reason)
    }
}
