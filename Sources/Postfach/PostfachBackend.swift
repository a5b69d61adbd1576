import Foundation

/// One payload on its way to a Postfach. New fields get defaults, so backends keep compiling.
public struct Delivery: Sendable, Hashable {
    /// Idempotency key: the message id, or `sha256-<hex>` when the message has none. `[A-Za-z0-9._-]`, 1–128.
    public var id: String
    /// Name of the Postfach (`[a-z0-9][a-z0-9._-]*`, at most 64), as decided by routing.
    public var postfach: String
    /// The payload bytes, unchanged, in a file (streamed, never loaded whole by the filesystem backend).
    public var payload: URL
    /// SHA-256 of the payload, lower-case hex.
    public var payloadSHA256: String
    /// Size of the payload in bytes.
    public var payloadSize: Int64
    /// When Amtsbote received the submission.
    public var receivedAt: Date
    /// Routing and validation facts to deliver alongside: schema, rule, area key … (no payload values).
    public var metadata: [String: String]

    public init(id: String, postfach: String, payload: URL, payloadSHA256: String, payloadSize: Int64,
                receivedAt: Date, metadata: [String: String] = [:]) {
        self.id = id
        self.postfach = postfach
        self.payload = payload
        self.payloadSHA256 = payloadSHA256
        self.payloadSize = payloadSize
        self.receivedAt = receivedAt
        self.metadata = metadata
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

    public init(deliveryID: String, postfach: String, backend: String, location: String, deliveredAt: Date,
                payloadSHA256: String, alreadyPresent: Bool) {
        self.deliveryID = deliveryID
        self.postfach = postfach
        self.backend = backend
        self.location = location
        self.deliveredAt = deliveredAt
        self.payloadSHA256 = payloadSHA256
        self.alreadyPresent = alreadyPresent
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

    /// `true` for ``Code/unavailable``, ``Code/cancelled`` and ``Code/timeout``.
    public var isRetryable: Bool { code == .unavailable || code == .cancelled || code == .timeout }
    public var description: String { "\(code): \(message)" }
}

/// A Postfach transport: the filesystem, an HTTP endpoint, a queue …
///
/// Contract (checked by the shared conformance suite in `PostfachTesting`):
/// - `deliver` is idempotent per `Delivery.id`: delivering the same id and payload again returns a receipt with
///   `alreadyPresent == true` and leaves one copy; the same id with another payload throws ``PostfachError/Code/conflict``.
/// - A payload becomes visible whole or not at all; a failed or cancelled delivery leaves nothing visible.
/// - Failures throw ``PostfachError``; cancellation throws it with code `cancelled` (or `CancellationError`).
public protocol PostfachBackend: Sendable {
    /// Backend kind, as named in configuration.
    var kind: String { get }
    /// Delivers one payload to one Postfach.
    func deliver(_ delivery: Delivery) async throws -> Receipt
}

extension PostfachBackend {
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
