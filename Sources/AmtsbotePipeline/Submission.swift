import Foundation

/// Where a submission stands. Every submission ends in `delivered`, `duplicate` or one of the kept states
/// (`rejected`, `unroutable`, `conflict`, `dead`, `abandoned`) with its reason; nothing leaves the ledger silently.
public enum SubmissionState: String, Codable, Sendable, CaseIterable {
    /// Recorded; the payload is being read.
    case received
    /// Valid; routing keys recorded, not yet routed. Written by earlier versions between the verdict and the
    /// queueing (the intake now writes both at once); recovery routes and queues such a row.
    case validated
    /// Not well-formed, refused by the safe profile, or schema-invalid. Payload kept.
    case rejected
    /// No Postfach could be decided (unknown, retired or malformed key, no rule). Payload kept.
    case unroutable
    /// Routed and waiting for its (first or next) delivery attempt, due at `nextAttemptAt`.
    case queued
    /// A delivery attempt is under way: one process holds the row's lease (`leaseToken` until `leaseUntil`).
    case running
    /// Delivered; the receipt is recorded.
    case delivered
    /// The same delivery id was accepted before with the same payload (a resend); `duplicateOf` names the original.
    case duplicate
    /// The delivery id was accepted before with a *different* payload (a portal reusing message ids, or a forged
    /// id). Kept with its payload and reason `ledger.id-conflict`, never delivered under that id; `duplicateOf`
    /// names the row that owns the id.
    case conflict
    /// Delivery failed more often than allowed, or for good. Payload and last error kept; `retry` re-queues.
    case dead
    /// Intake was interrupted before the submission was accepted (a crash while reading, or before it was queued);
    /// the sender must resend.
    case abandoned

    /// States that need no more work.
    public var isFinal: Bool { ![.received, .validated, .queued, .running].contains(self) }
}

/// Where the receiving side's answer about a delivery stands (only for backends that answer after delivery).
public enum ConfirmationState: String, Codable, Sendable, CaseIterable {
    /// Delivered; the receiver has not answered yet. The ledger asks again at `confirmationDueAt`.
    case pending
    /// The receiver accepted the delivery for processing; its statement is the evidence.
    case accepted
    /// The receiver rejected the delivery after taking it; its statement and reasons are kept (`postfach.receiver-rejected`).
    case rejected
    /// No answer came within ``RetryPolicy/confirmationDeadline`` (`postfach.confirmation-overdue`); no longer asked.
    case overdue
}

/// One row of the ledger: a submission and its delivery to the one Postfach routing chose.
public struct Submission: Codable, Sendable, Hashable {
    public var id: Int64?
    public var source: String
    public var receivedAt: Date
    public var updatedAt: Date
    public var state: SubmissionState
    /// Where the ``PayloadStore`` keeps the payload as received: a file path, or `postgres:<id>`.
    public var payloadLocation: String?
    public var payloadSHA256: String?
    public var payloadSize: Int64?
    public var messageId: String?
    public var deliveryId: String?
    public var schemaId: String?
    /// Routing keys captured while validating (JSON), so a restart can route without parsing again.
    public var routingKeys: String?
    public var postfach: String?
    /// The routing decision (JSON: rule, level, table).
    public var routing: String?
    public var reasonCode: String?
    public var reason: String?
    /// Delivery attempts started (counted when an attempt's lease is taken).
    public var attempts: Int
    /// When a `queued` row is due.
    public var nextAttemptAt: Date?
    /// The receipt (JSON).
    public var receipt: String?
    public var duplicateOf: Int64?
    /// The process working on the row (``ProcessIdentity``): the one reading a `received` row, routing a
    /// `validated` one, or holding a `running` row's lease. nil when nobody is.
    public var owner: String?
    /// The lease of a `running` row: a fresh random token per attempt. An attempt's outcome is recorded only while
    /// the row still carries the token it was claimed with (fencing).
    public var leaseToken: String?
    /// Until when the lease holds; a heartbeat extends it while the attempt runs, and any process puts a row whose
    /// lease expired back in the queue.
    public var leaseUntil: Date?
    /// When the payload was deleted under the retention policy (the row stays as the audit record).
    public var purgedAt: Date?
    /// The service client that submitted it (`amtsbote serve`); nil for the command line. Only that client may
    /// read the row through the service.
    public var client: String?
    /// The portal's metadata (a JSON object, as the portal sent it: Servicekonto level, payment reference, its own
    /// reference), handed to the delivery untouched. Never logged.
    public var portalMetadata: String?
    /// What validation found (JSON array of ``StoredFinding``: code, severity, line, column, path; no messages,
    /// which may quote the payload).
    public var findings: String?
    /// What the backend recorded before an irreversible step of an attempt (a server-assigned id such as
    /// FIT-Connect's submission id), so that a later attempt resumes the same transfer. Kept as the audit record.
    public var externalReference: String?
    /// Whether the receiving side has answered about a delivered row whose receipt awaits an answer (FIT-Connect's
    /// accept or reject); nil when no answer is awaited.
    public var confirmation: ConfirmationState?
    /// The receiver's answer, verbatim (FIT-Connect: the signed Security Event Token): the evidence of acceptance
    /// or rejection.
    public var confirmationEvidence: String?
    /// When the ledger next asks the receiving side, while ``confirmation`` is `pending`.
    public var confirmationDueAt: Date?
    /// When the receiver issued its answer.
    public var confirmedAt: Date?

    /// A new row in state `received`, owned by `owner`.
    public init(source: String, receivedAt: Date, owner: String?) {
        self.init(id: nil, source: source, receivedAt: receivedAt, updatedAt: receivedAt, state: .received)
        self.owner = owner
    }

    /// A row with every field given (engines reading their storage use this).
    public init(id: Int64?, source: String, receivedAt: Date, updatedAt: Date, state: SubmissionState,
                payloadLocation: String? = nil, payloadSHA256: String? = nil, payloadSize: Int64? = nil,
                messageId: String? = nil, deliveryId: String? = nil, schemaId: String? = nil, routingKeys: String? = nil,
                postfach: String? = nil, routing: String? = nil, reasonCode: String? = nil, reason: String? = nil,
                attempts: Int = 0, nextAttemptAt: Date? = nil, receipt: String? = nil, duplicateOf: Int64? = nil,
                owner: String? = nil, leaseToken: String? = nil, leaseUntil: Date? = nil, purgedAt: Date? = nil,
                client: String? = nil, portalMetadata: String? = nil, findings: String? = nil,
                externalReference: String? = nil, confirmation: ConfirmationState? = nil,
                confirmationEvidence: String? = nil, confirmationDueAt: Date? = nil, confirmedAt: Date? = nil) {
        self.id = id
        self.source = source
        self.receivedAt = receivedAt
        self.updatedAt = updatedAt
        self.state = state
        self.payloadLocation = payloadLocation
        self.payloadSHA256 = payloadSHA256
        self.payloadSize = payloadSize
        self.messageId = messageId
        self.deliveryId = deliveryId
        self.schemaId = schemaId
        self.routingKeys = routingKeys
        self.postfach = postfach
        self.routing = routing
        self.reasonCode = reasonCode
        self.reason = reason
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.receipt = receipt
        self.duplicateOf = duplicateOf
        self.owner = owner
        self.leaseToken = leaseToken
        self.leaseUntil = leaseUntil
        self.purgedAt = purgedAt
        self.client = client
        self.portalMetadata = portalMetadata
        self.findings = findings
        self.externalReference = externalReference
        self.confirmation = confirmation
        self.confirmationEvidence = confirmationEvidence
        self.confirmationDueAt = confirmationDueAt
        self.confirmedAt = confirmedAt
    }

    /// The recorded findings, decoded (empty when none were recorded).
    public var storedFindings: [StoredFinding] {
        findings.flatMap { try? JSONDecoder().decode([StoredFinding].self, from: Data($0.utf8)) } ?? []
    }
}

/// Where a submission came from, recorded with it before its payload is read.
public struct IntakeOrigin: Sendable, Hashable {
    /// The service client that sent it.
    public var client: String?
    /// The portal's metadata (a JSON object), kept and delivered untouched.
    public var portalMetadata: String?

    public init(client: String? = nil, portalMetadata: String? = nil) {
        self.client = client
        self.portalMetadata = portalMetadata
    }
}

/// One finding as the ledger keeps it: where and what, without the message (messages may quote payload values).
public struct StoredFinding: Codable, Sendable, Hashable {
    public var code: String
    public var severity: String
    public var line: Int
    public var column: Int
    public var path: String

    public init(code: String, severity: String, line: Int, column: Int, path: String) {
        self.code = code
        self.severity = severity
        self.line = line
        self.column = column
        self.path = path
    }
}
