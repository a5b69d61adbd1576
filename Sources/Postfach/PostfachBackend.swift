import Foundation

/// One payload on its way to a Postfach. New fields get defaults, so backends keep compiling.
public struct Delivery: Sendable, Hashable {
    /// Idempotency key: the message id, or `sha256-<hex>` when the message has none. `[A-Za-z0-9._-]`, 1–128.
    public var id: String
    /// Name of the Postfach (`[a-z0-9][a-z0-9._-]*`, at most 64), as decided by routing.
    public var postfach: String
    /// The payload bytes, unchanged: in a file (streamed, never loaded whole by the filesystem backend) or, for a
    /// small payload the ledger keeps, in memory.
    public var payload: PayloadSource
    /// SHA-256 of the payload, lower-case hex.
    public var payloadSHA256: String
    /// Size of the payload in bytes.
    public var payloadSize: Int64
    /// When Amtsbote received the submission.
    public var receivedAt: Date
    /// Routing and validation facts to deliver alongside: schema, routing decision, the portal's metadata
    /// (no payload values).
    public var metadata: DeliveryMetadata

    public init(id: String, postfach: String, payload: PayloadSource, payloadSHA256: String, payloadSize: Int64,
                receivedAt: Date, metadata: DeliveryMetadata = DeliveryMetadata()) {
        self.id = id
        self.postfach = postfach
        self.payload = payload
        self.payloadSHA256 = payloadSHA256
        self.payloadSize = payloadSize
        self.receivedAt = receivedAt
        self.metadata = metadata
    }

    /// The whole payload, read into memory, checked against ``payloadSize`` (for backends that send it in one
    /// piece).
    /// - Throws: ``PostfachError`` `rejected` when it cannot be read or has another size.
    public func payloadContents() throws -> Data {
        let data = try payload.contents()
        guard Int64(data.count) == payloadSize else {
            throw PostfachError.wrongSize(Int64(data.count), expected: payloadSize)
        }
        return data
    }

    /// A delivery whose payload is the file at `payload`.
    public init(id: String, postfach: String, payload: URL, payloadSHA256: String, payloadSize: Int64,
                receivedAt: Date, metadata: DeliveryMetadata = DeliveryMetadata()) {
        self.init(id: id, postfach: postfach, payload: .file(payload), payloadSHA256: payloadSHA256,
                  payloadSize: payloadSize, receivedAt: receivedAt, metadata: metadata)
    }

    /// `true` when `id` may be used as a delivery id (and as a file name by backends).
    public static func isValidID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard (1...128).contains(bytes.count), bytes[0] != UInt8(ascii: ".") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
        }
    }

    /// `true` when `name` may be used as a Postfach name.
    public static func isValidPostfach(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        return bytes.enumerated().allSatisfy { index, b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x7A)
                || (index > 0 && (b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")))
        }
    }
}

/// What travels with a delivery besides its bytes, typed: the facts validation and routing established and the
/// portal's metadata from the intake. Never a value from the payload.
public struct DeliveryMetadata: Sendable, Hashable, Codable {
    /// The ledger's id of the submission.
    public var submission: Int64?
    /// The schema the payload was validated against (`wohnsitz.anmeldung-1.0`).
    public var schemaId: String?
    /// The LeiKa key (Leistungsschlüssel) of the service applied for, when routing found one.
    public var leikaKey: String?
    /// The routing decision as the ledger records it (JSON: table, rule, keys).
    public var routing: String?
    /// The portal's metadata as the portal sent it (a JSON object: authentication level, payment, reference).
    public var portal: String?
    /// Anything else a caller adds, by name.
    public var extra: [String: String]

    public init(submission: Int64? = nil, schemaId: String? = nil, leikaKey: String? = nil, routing: String? = nil,
                portal: String? = nil, extra: [String: String] = [:]) {
        self.submission = submission
        self.schemaId = schemaId
        self.leikaKey = leikaKey
        self.routing = routing
        self.portal = portal
        self.extra = extra
    }

    /// Every field present, by its stable name (`submission`, `schema`, `leika`, `routing`, `portal`, then the
    /// extra ones): for a metadata file or a JSON header.
    public var fields: [String: String] {
        var fields = extra
        if let submission { fields["submission"] = "\(submission)" }
        if let schemaId { fields["schema"] = schemaId }
        if let leikaKey { fields["leika"] = leikaKey }
        if let routing { fields["routing"] = routing }
        if let portal { fields["portal"] = portal }
        return fields
    }
}

/// What an attempt knows and may record beyond the delivery itself. A transport whose server assigns the ids
/// (FIT-Connect's submission id) records that reference before its irreversible step, and an attempt after a
/// crash or a failure finds it in ``reference`` and resumes the same transfer instead of starting a second one.
public struct DeliveryContext: Sendable {
    /// This attempt's number, from 1.
    public var attempt: Int
    /// The reference an earlier attempt recorded for this delivery; nil when none did.
    public var reference: String?
    private let recorder: @Sendable (String) async throws -> Void

    /// - Parameter record: stores a reference durably (the ledger, fenced by the attempt's lease); throws when it
    ///   cannot, and the backend must then not take its next step.
    public init(attempt: Int, reference: String?, record: @escaping @Sendable (String) async throws -> Void) {
        self.attempt = attempt
        self.reference = reference
        recorder = record
    }

    /// Records `reference` durably before the backend's next step; afterwards ``reference`` holds it.
    public mutating func record(_ reference: String) async throws {
        try await recorder(reference)
        self.reference = reference
    }

    /// A context that keeps references for this call only: one-off deliveries and tests.
    public static var detached: DeliveryContext { DeliveryContext(attempt: 1, reference: nil) { _ in } }
}

/// Proof of delivery.
public struct Receipt: Sendable, Hashable, Codable {
    /// The delivery id.
    public var deliveryID: String
    /// The Postfach.
    public var postfach: String
    /// Backend kind that delivered (`filesystem`, `memory`, …).
    public var backend: String
    /// Where it went, in the backend's terms (a file path, a URL, a queue id).
    public var location: String
    /// When the payload became visible in the Postfach.
    public var deliveredAt: Date
    /// SHA-256 of what the Postfach holds.
    public var payloadSHA256: String
    /// `true` when the Postfach already held this delivery (a resend or a retry after a crash): not delivered twice.
    public var alreadyPresent: Bool
    /// `true` when the receiving side answers later whether it accepts the delivery (FIT-Connect's accept and reject
    /// events): the ledger then asks ``PostfachBackend/confirmation(of:)`` until it has the answer.
    public var awaitsConfirmation: Bool

    public init(deliveryID: String, postfach: String, backend: String, location: String, deliveredAt: Date,
                payloadSHA256: String, alreadyPresent: Bool, awaitsConfirmation: Bool = false) {
        self.deliveryID = deliveryID
        self.postfach = postfach
        self.backend = backend
        self.location = location
        self.deliveredAt = deliveredAt
        self.payloadSHA256 = payloadSHA256
        self.alreadyPresent = alreadyPresent
        self.awaitsConfirmation = awaitsConfirmation
    }

    private enum CodingKeys: String, CodingKey {
        case deliveryID, postfach, backend, location, deliveredAt, payloadSHA256, alreadyPresent, awaitsConfirmation
    }

    /// Receipts recorded before ``awaitsConfirmation`` existed read as not awaiting one.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        deliveryID = try container.decode(String.self, forKey: .deliveryID)
        postfach = try container.decode(String.self, forKey: .postfach)
        backend = try container.decode(String.self, forKey: .backend)
        location = try container.decode(String.self, forKey: .location)
        deliveredAt = try container.decode(Date.self, forKey: .deliveredAt)
        payloadSHA256 = try container.decode(String.self, forKey: .payloadSHA256)
        alreadyPresent = try container.decode(Bool.self, forKey: .alreadyPresent)
        awaitsConfirmation = try container.decodeIfPresent(Bool.self, forKey: .awaitsConfirmation) ?? false
    }
}

/// A delivery the receiving side took, as the ledger knows it when it asks for the receiver's verdict.
public struct DeliveredItem: Sendable, Hashable {
    /// The delivery id.
    public var deliveryID: String
    /// The Postfach.
    public var postfach: String
    /// What the backend recorded during the delivery (``DeliveryContext/record(_:)``); nil when nothing.
    public var reference: String?
    /// The receipt of the delivery.
    public var receipt: Receipt

    public init(deliveryID: String, postfach: String, reference: String?, receipt: Receipt) {
        self.deliveryID = deliveryID
        self.postfach = postfach
        self.reference = reference
        self.receipt = receipt
    }
}

/// The receiving side's verdict on a delivery it took: accepted for processing, or rejected with its reasons.
public struct Confirmation: Sendable, Hashable {
    public enum Verdict: String, Sendable, Hashable, Codable {
        case accepted, rejected
    }

    public var verdict: Verdict
    /// The receiver's own statement, kept verbatim as evidence (FIT-Connect: the signed Security Event Token).
    public var evidence: String
    /// When the receiver issued it.
    public var issuedAt: Date
    /// Why it was rejected, in the receiver's words (problem titles); empty when accepted.
    public var problems: [String]

    public init(verdict: Verdict, evidence: String, issuedAt: Date, problems: [String] = []) {
        self.verdict = verdict
        self.evidence = evidence
        self.issuedAt = issuedAt
        self.problems = problems
    }
}

/// Why a delivery failed.
public struct PostfachError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable failure codes; ``isRetryable`` says whether trying again can help.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The Postfach cannot take deliveries right now (disk full, permission, server down): retry later.
        public static let unavailable = Code(rawValue: "postfach.unavailable")
        /// The delivery itself is unacceptable (bad id or name, payload unreadable): retrying cannot help.
        public static let rejected = Code(rawValue: "postfach.rejected")
        /// The Postfach holds a different payload under the same id: never overwritten.
        public static let conflict = Code(rawValue: "postfach.conflict")
        /// The delivery was cancelled before it became visible.
        public static let cancelled = Code(rawValue: "postfach.cancelled")
        /// The backend gave no answer in time (set by the caller that gave up waiting): retry later.
        public static let timeout = Code(rawValue: "postfach.timeout")
        /// The receiving side asks us to slow down (HTTP 429): retry after its `Retry-After`.
        public static let rateLimited = Code(rawValue: "postfach.rate-limited")
        /// The receiving side refuses our credentials (HTTP 401/403, an OAuth2 token refused): retrying with the same
        /// configuration cannot help; fix the credentials, then `amtsbote retry`.
        public static let authenticationFailed = Code(rawValue: "postfach.authentication-failed")
        /// The receiving side's answer about a delivery cannot be trusted: its signature does not verify, or it
        /// speaks of other content than was sent. The answer is not counted; the delivery keeps awaiting one.
        public static let confirmationInvalid = Code(rawValue: "postfach.confirmation-invalid")
        /// The receiving side took the delivery and then rejected it (FIT-Connect's reject event), with its reasons.
        public static let receiverRejected = Code(rawValue: "postfach.receiver-rejected")

        /// Whether trying again later can help: explicit per code, so a new code is never retried by accident.
        public var isRetryable: Bool {
            switch self {
            case .unavailable, .cancelled, .timeout, .rateLimited: true
            default: false
            }
        }
    }

    public var code: Code
    public var message: String
    /// How long the receiving side asked us to wait before the next attempt (an HTTP `Retry-After`); the retry
    /// waits at least this long.
    public var retryAfter: Duration?

    public init(code: Code, message: String, retryAfter: Duration? = nil) {
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    /// `true` for ``Code/unavailable``, ``Code/cancelled``, ``Code/timeout`` and ``Code/rateLimited``.
    public var isRetryable: Bool { code.isRetryable }
    public var description: String { "\(code): \(message)" }
}

/// A Postfach transport: the filesystem, an HTTP endpoint, a queue …
///
/// Contract (checked by the shared conformance suite in `PostfachTesting`):
/// - `deliver` is idempotent per `Delivery.id`: delivering the same id and payload again returns a receipt with
///   `alreadyPresent == true` and leaves one copy; the same id with another payload throws ``PostfachError/Code/conflict``.
/// - A payload becomes visible whole or not at all; a failed or cancelled delivery leaves nothing visible.
/// - Failures throw ``PostfachError``; cancellation throws it with code `cancelled` (or `CancellationError`).
/// - A backend with several steps records what it needs to resume (``DeliveryContext/record(_:)``) before a step
///   that cannot be undone, and resumes from ``DeliveryContext/reference`` when an attempt finds one.
public protocol PostfachBackend: Sendable {
    /// Backend kind, as named in configuration.
    var kind: String { get }
    /// Delivers one payload to one Postfach.
    func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt
    /// The receiving side's verdict on a delivery whose receipt ``Receipt/awaitsConfirmation``; nil while it has
    /// not decided. Throws ``PostfachError`` when the answer cannot be read or cannot be trusted (a signature that
    /// does not verify, evidence about other content than was sent): such an answer never counts. Default: nil.
    func confirmation(of delivered: DeliveredItem) async throws -> Confirmation?
    /// Releases what the backend holds (connection pools); called once when the process ends. Default: nothing.
    func shutdown() async
}

extension PostfachBackend {
    /// Delivers with a context that records nowhere (one-off deliveries and tests).
    public func deliver(_ delivery: Delivery) async throws -> Receipt {
        try await deliver(delivery, context: .detached)
    }

    public func shutdown() async {}

    public func confirmation(of delivered: DeliveredItem) async throws -> Confirmation? { nil }

    /// Checks id and Postfach name; backends call this first.
    public func checkNames(_ delivery: Delivery) throws {
        guard Delivery.isValidID(delivery.id) else {
            throw PostfachError(code: .rejected, message: "delivery id is not [A-Za-z0-9._-]{1,128}")
        }
        guard Delivery.isValidPostfach(delivery.postfach) else {
            throw PostfachError(code: .rejected, message: "Postfach name is not [a-z0-9][a-z0-9._-]{0,63}")
        }
    }
}

/// The `Content-Digest` field of HTTP (RFC 9530) for SHA-256, as network backends send it and receivers check it.
public enum ContentDigest {
    /// `sha-256=:<base64>:` of a SHA-256 given as hex.
    public static func sha256(hex: String) -> String {
        var bytes: [UInt8] = []
        var iterator = hex.makeIterator()
        while let high = iterator.next(), let low = iterator.next(),
              let h = high.hexDigitValue, let l = low.hexDigitValue { bytes.append(UInt8(h << 4 | l)) }
        return sha256(bytes: bytes)
    }

    /// `sha-256=:<base64>:` of SHA-256 bytes.
    public static func sha256<Bytes: Sequence>(bytes: Bytes) -> String where Bytes.Element == UInt8 {
        "sha-256=:\(Data(bytes).base64EncodedString()):"
    }

    /// The sha-256 member of a `Content-Digest` field, without spaces; nil when it has none.
    public static func sha256Member(of field: String) -> String? {
        field.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .first { $0.lowercased().hasPrefix("sha-256=") }
            .map { "sha-256=" + $0.dropFirst(8) }
    }
}

extension Duration {
    /// The duration in nanoseconds as an Int64, saturating (for timeouts handed to NIO and AsyncHTTPClient).
    public var clampedNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? Int64.max : product + attoseconds / 1_000_000_000
    }
}

/// Points in time as the delivery records write them: ISO 8601, UTC, whole seconds (`2026-11-02T08:14:27Z`).
public enum InternetDateTime {
    /// The text of `date`. Formats without ICU (unlike a new `ISO8601DateFormatter` per call, which costs more
    /// than the rest of a small delivery's bookkeeping).
    public static func string(from date: Date) -> String { date.formatted(.iso8601) }
}

/// Bytes as lowercase hexadecimal text, as hashes are written in receipts, metadata and the ledger.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// `bytes` (a digest, for example) as two lowercase hex digits per byte.
    public static func lowercase(_ bytes: some Sequence<UInt8>) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}

extension PostfachError {
    /// A payload of another size than the delivery declares: `rejected`.
    public static func wrongSize(_ actual: Int64, expected: Int64) -> PostfachError {
        PostfachError(code: .rejected, message: "the payload has \(actual) bytes, \(expected) expected")
    }
}

/// Where a delivery's payload is: a file, or (a small payload the ledger keeps) bytes in memory.
public enum PayloadSource: Sendable, Hashable {
    /// The payload is this file's content.
    case file(URL)
    /// The payload is these bytes.
    case bytes([UInt8])

    /// The whole payload, read into memory (for backends that send it in one piece).
    /// - Throws: ``PostfachError`` `rejected` when the file cannot be read.
    public func contents() throws -> Data {
        switch self {
        case .bytes(let bytes):
            return Data(bytes)
        case .file(let url):
            do { return try Data(contentsOf: url) } catch {
                throw PostfachError(code: .rejected, message: "the payload file cannot be read")
            }
        }
    }
}
