import Foundation

/// Keeps deliveries in memory: for tests and dry runs. Failures and delays can be injected.
public actor InMemoryBackend: PostfachBackend {
    public nonisolated let kind = "memory"

    /// One stored delivery.
    public struct Stored: Sendable, Hashable {
        public let delivery: Delivery
        public let payload: Data
        public let receipt: Receipt
    }

    private var stored: [String: [String: Stored]] = [:]
    private var failures: [PostfachError] = []
    private var delay: Duration = .zero

    public init() {}

    /// The next `count` deliveries fail with `error`.
    public func failNext(_ count: Int, with error: PostfachError) {
        failures += Array(repeating: error, count: count)
    }

    /// Every delivery waits this long before storing (to test cancellation and timeouts).
    public func setDelay(_ delay: Duration) { self.delay = delay }

    /// What a Postfach holds, by delivery id.
    public func contents(of postfach: String) -> [String: Stored] { stored[postfach] ?? [:] }

    /// All deliveries held, across Postfächer.
    public var count: Int { stored.values.reduce(0) { $0 + $1.count } }

    public func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        try checkNames(delivery)
        if !failures.isEmpty { throw failures.removeFirst() }
        if Task.isCancelled { throw PostfachError(code: .cancelled, message: "cancelled before the payload was stored") }
        if delay > .zero {
            do { try await Task.sleep(for: delay) } catch {
                throw PostfachError(code: .cancelled, message: "cancelled before the payload was stored")
            }
        }
        if let existing = stored[delivery.postfach]?[delivery.id] {
            guard existing.receipt.payloadSHA256 == delivery.payloadSHA256 else {
                throw PostfachError(code: .conflict, message: "a different payload is stored under the id \(delivery.id)")
            }
            var receipt = existing.receipt
            receipt.alreadyPresent = true
            return receipt
        }
        let payload = try delivery.payloadContents()
        // The last point a cancellation is honoured: storing is one step, so nothing partial is ever visible.
        if Task.isCancelled { throw PostfachError(code: .cancelled, message: "cancelled before the payload was stored") }
        let receipt = Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind,
                              location: "memory:\(delivery.postfach)/\(delivery.id)", deliveredAt: Date(),
                              payloadSHA256: delivery.payloadSHA256, alreadyPresent: false)
        stored[delivery.postfach, default: [:]][delivery.id] = Stored(delivery: delivery, payload: payload, receipt: receipt)
        return receipt
    }
}
