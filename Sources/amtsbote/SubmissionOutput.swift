import AmtsbotePipeline
import Foundation
import XoevReports
import Postfach
import XoevRouting
import XoevValidation

/// One line of `submit`, `route`, `deliveries` and `retry` output. Every key is present in JSON (null when unknown).
struct SubmissionRecord: Encodable {
    var id: Int64?
    var source: String
    var state: String
    var postfach: String?
    var location: String?
    var deliveryId: String?
    var duplicateOf: Int64?
    /// When the payload was deleted under the retention policy.
    var purgedAt: Date?
    var attempts: Int?
    var routing: RoutingSummary?
    var reasonCode: String?
    var reason: String?
    /// The receiver's answer after delivery (`pending`, `accepted`, `rejected`); nil when none is awaited.
    var confirmation: String?

    init(source: String, state: String, postfach: String? = nil, routing: RoutingSummary? = nil,
         reasonCode: String? = nil, reason: String? = nil) {
        self.source = source
        self.state = state
        self.postfach = postfach
        self.routing = routing
        self.reasonCode = reasonCode
        self.reason = reason
    }

    /// The record of a submission as the ledger has it (for a resend, with where its original went).
    static func of(_ submission: Submission, in ledger: any LedgerStore) async -> SubmissionRecord {
        var original: Submission?
        if submission.state == .duplicate, let id = submission.duplicateOf { original = try? await ledger.submission(id) }
        return SubmissionRecord(submission, original: original)
    }

    init(_ submission: Submission, original: Submission?) {
        id = submission.id
        source = submission.source
        state = submission.state.rawValue
        postfach = submission.postfach
        deliveryId = submission.deliveryId
        duplicateOf = submission.duplicateOf
        purgedAt = submission.purgedAt
        attempts = submission.attempts
        routing = submission.routing.flatMap { try? JSONDecoder().decode(RoutingSummary.self, from: Data($0.utf8)) }
        reasonCode = submission.reasonCode
        reason = submission.reason
        confirmation = submission.confirmation?.rawValue
        var receiptSource = submission
        // A resend shows where its original went; a conflict shows nothing of the other submission's delivery.
        if submission.state == .duplicate, let row = original {
            receiptSource = row
            postfach = row.postfach
        }
        location = receiptSource.receipt
            .flatMap { try? Self.receiptDecoder.decode(Receipt.self, from: Data($0.utf8)) }?.location
    }

    static let receiptDecoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// The exit status a submission in this state contributes.
    /// A resend (`duplicate`) counts as its original: it is a success only once the original was delivered.
    /// `handedToWorkers`: a queued (or running) row is a success, since delivery workers take it from here (a
    /// shared ledger, where `submit` only records and queues).
    static func status(of submission: Submission, ledger: any LedgerStore, handedToWorkers: Bool = false) async -> ExitStatus {
        if submission.state == .duplicate {
            guard let id = submission.duplicateOf, let original = try? await ledger.submission(id),
                  original.state != .duplicate else {
                return .deliveryFailed
            }
            return await status(of: original, ledger: ledger, handedToWorkers: handedToWorkers)
        }
        if handedToWorkers && [.queued, .running].contains(submission.state) { return .allValid }
        return switch submission.state {
        case .delivered, .duplicate: .allValid
        case .rejected: .someInvalid
        case .abandoned: .unreadable
        case .unroutable: .unroutable
        case .received, .validated, .queued, .running, .dead, .conflict: .deliveryFailed
        }
    }

    enum CodingKeys: String, CodingKey {
        case id, source, state, postfach, location, deliveryId, duplicateOf, attempts, routing, reasonCode, reason, purgedAt,
             confirmation
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(source, forKey: .source)
        try c.encode(state, forKey: .state)
        try c.encode(postfach, forKey: .postfach)
        try c.encode(location, forKey: .location)
        try c.encode(deliveryId, forKey: .deliveryId)
        try c.encode(duplicateOf, forKey: .duplicateOf)
        try c.encode(purgedAt.map { ISO8601DateFormatter().string(from: $0) }, forKey: .purgedAt)
        try c.encode(attempts, forKey: .attempts)
        try c.encode(routing, forKey: .routing)
        try c.encode(reasonCode, forKey: .reasonCode)
        try c.encode(reason, forKey: .reason)
        try c.encode(confirmation, forKey: .confirmation)
    }

    var text: String {
        let number = (id.map { " [#\($0)]" } ?? "") + (purgedAt == nil ? "" : " (payload purged)")
        switch state {
        case "delivered":
            let answer = switch confirmation {
            case "pending" where reasonCode != nil: ", awaiting the receiver's answer (an answer not counted: \(reasonCode ?? ""): \(reason ?? ""))"
            case "pending": ", awaiting the receiver's answer"
            case "accepted": ", accepted by the receiver"
            case "rejected": ", then rejected by the receiver: \(reasonCode ?? "?"): \(reason ?? "")"
            case "overdue": ", no answer from the receiver: \(reasonCode ?? "?")"
            default: ""
            }
            return "\(source): delivered -> \(postfach ?? "?") (\(location ?? "?"))\(answer)\(number)"
        case "duplicate":
            return "\(source): duplicate of #\(duplicateOf ?? 0), already in \(postfach ?? "?") (\(location ?? "not yet delivered"))\(number)"
        case "routed":
            return "\(source): would go to \(postfach ?? "?") (rule \(routing?.rule ?? "?"), \(routing?.level ?? "?") level)"
        case "conflict":
            return "\(source): conflict: \(reasonCode ?? "?"): delivery id \(deliveryId ?? "?") belongs to #\(duplicateOf ?? 0) with a different payload; kept, not delivered\(number)"
        case "queued" where (attempts ?? 0) == 0:
            return "\(source): queued for delivery to \(postfach ?? "?") (workers deliver it)\(number)"
        case "running":
            return "\(source): being delivered to \(postfach ?? "?") (attempt \(attempts ?? 0))\(number)"
        case "queued":
            return "\(source): queued for retry to \(postfach ?? "?") after \(attempts ?? 0) attempt(s): \(reasonCode ?? "")\(number)"
        default:
            return "\(source): \(state): \(reasonCode ?? "?"): \(reason ?? "")\(number)"
        }
    }
}

/// Prints records as text or JSON Lines, and a summary in text mode.
struct SubmissionPrinter {
    let format: OutputFormat
    var showIDs = false
    private var out = StandardOutput()
    private let encoder = StandardOutput.jsonLineEncoder()

    init(format: OutputFormat, showIDs: Bool = false) {
        self.format = format
        self.showIDs = showIDs
    }

    mutating func write(_ record: SubmissionRecord) {
        switch format {
        case .text:
            out.append(record.text + "\n")
        case .json:
            out.append(StandardOutput.jsonLine(record, encoder: encoder))
        }
    }

    mutating func finish(counts: [SubmissionState: Int]? = nil, run: Int? = nil) {
        if format == .text, let counts {
            let parts = SubmissionState.allCases.compactMap { state in counts[state].map { "\($0) \(state.rawValue)" } }
            let prefix = run.map { "\($0) submission\($0 == 1 ? "" : "s") this run; " } ?? ""
            out.append("\(prefix)ledger: \(parts.isEmpty ? "empty" : parts.joined(separator: ", "))\n")
        }
        out.flush()
    }
}

/// Decisions without delivery, for `submit --dry-run` and `route`.
enum DryRun {
    struct Line {
        var record: SubmissionRecord
        var status: ExitStatus
        var decision: RoutingDecision?

        func text(explain: Bool) -> String {
            guard explain, let decision else { return record.text }
            return record.text + "\n" + decision.explanation.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n")
        }
    }

    static func decide(_ outcome: Outcome, router: Router) -> Line {
        switch outcome {
        case .unreadable(let document, let code, let message):
            return Line(record: SubmissionRecord(source: document, state: "unreadable", reasonCode: code, reason: message),
                        status: .unreadable)
        case .report(let report):
            guard report.isValid else {
                let first = report.errors.first
                return Line(record: SubmissionRecord(
                    source: report.document, state: "rejected", reasonCode: first?.code,
                    reason: first.map { Pipeline.place(of: $0) }), status: .someInvalid)
            }
            switch router.route(RoutingKeys(captured: report.captured), at: Date()) {
            case .failure(let unroutable):
                return Line(record: SubmissionRecord(source: report.document, state: "unroutable",
                                                     reasonCode: unroutable.code, reason: unroutable.message),
                            status: .unroutable)
            case .success(let decision):
                return Line(record: SubmissionRecord(source: report.document, state: "routed",
                                                     postfach: decision.postfach.value, routing: RoutingSummary(decision)),
                            status: .allValid, decision: decision)
            }
        }
    }
}
