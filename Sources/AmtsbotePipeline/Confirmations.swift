import Foundation
import Logging
import Metrics
import Postfach

/// What one pass over the deliveries awaiting the receiver's answer did.
public struct ConfirmationSummary: Sendable, Hashable {
    /// Rows whose receiver was asked.
    public var asked = 0
    public var accepted = 0
    public var rejected = 0
    /// Asked; the receiver has not decided yet (asked again after ``RetryPolicy/confirmationCheck``).
    public var undecided = 0
    /// The answer could not be read or cannot be trusted (`postfach.confirmation-invalid`, an unreachable
    /// receiver): not counted, asked again later.
    public var failed = 0

    public init() {}
}

extension Pipeline {
    /// Asks the receiving side for its answer about delivered rows that await one and whose check is due (at most
    /// `limit`, up to `concurrency` at once), and records each accept or reject with its evidence. An answer that
    /// cannot be read or trusted is logged with its code and never recorded; the row is asked again after
    /// ``RetryPolicy/confirmationCheck``. A signalled `stop` ends the pass before the next row (the rows not asked
    /// are asked again later).
    public func checkConfirmations(limit: Int = 100, concurrency: Int = 8,
                                   until stop: StopSignal? = nil) async throws -> ConfirmationSummary {
        let due = try await ledger.dueConfirmations(limit: limit, recheckAfter: retry.confirmationCheck)
        return try await withThrowingTaskGroup(of: ConfirmationSummary.self) { group in
            var summary = ConfirmationSummary()
            var next = due.makeIterator()
            func addNext() -> Bool {
                guard stop?.isStopped != true, let row = next.next() else { return false }
                group.addTask { try await self.confirm(row) }
                return true
            }
            var started = 0
            while started < max(1, concurrency), addNext() { started += 1 }
            while let one = try await group.next() {
                summary.asked += one.asked
                summary.accepted += one.accepted
                summary.rejected += one.rejected
                summary.undecided += one.undecided
                summary.failed += one.failed
                _ = addNext()
            }
            return summary
        }
    }

    /// Asks about one row and records the answer; a ledger failure is thrown, anything else counted as failed.
    private func confirm(_ row: Submission) async throws -> ConfirmationSummary {
        var summary = ConfirmationSummary()
        summary.asked = 1
        let id = row.id ?? 0
        do {
            guard let answer = try await confirmation(of: row) else {
                summary.undecided = 1
                return summary
            }
            var answered = row
            answered.confirmation = answer.verdict == .accepted ? .accepted : .rejected
            answered.confirmationEvidence = answer.evidence
            answered.confirmedAt = answer.issuedAt
            if answer.verdict == .rejected {
                answered.reasonCode = PostfachError.Code.receiverRejected.rawValue
                answered.reason = String(answer.problems.joined(separator: "; ").prefix(4000))
            }
            guard try await ledger.recordConfirmation(answered) else { return summary }  // Another worker was first.
            if answer.verdict == .accepted { summary.accepted = 1 } else { summary.rejected = 1 }
            Counter(label: "amtsbote_confirmations_total", dimensions: [("verdict", answer.verdict.rawValue)]).increment()
            logger.info("receiver answered", metadata: ["submission": "\(id)", "postfach": "\(row.postfach ?? "")",
                                                        "verdict": "\(answer.verdict.rawValue)"])
        } catch let error as LedgerError {
            throw error
        } catch {
            summary.failed = 1
            let failure = error as? PostfachError ?? PostfachError(code: .unavailable, message: "\(error)")
            Counter(label: "amtsbote_confirmations_total", dimensions: [("verdict", "not-recorded")]).increment()
            logger.warning("receiver's answer not recorded", metadata: [
                "submission": "\(id)", "postfach": "\(row.postfach ?? "")", "code": "\(failure.code)"])
        }
        return summary
    }

    /// The backend's answer for one delivered row, within the attempt time limit.
    private func confirmation(of row: Submission) async throws -> Confirmation? {
        guard let postfach = row.postfach, let deliveryID = row.deliveryId, let text = row.receipt,
              let receipt = try? JSONDecoder.receipts.decode(Receipt.self, from: Data(text.utf8)) else {
            throw PostfachError(code: .confirmationInvalid, message: "the row has no readable receipt")
        }
        let item = DeliveredItem(deliveryID: deliveryID, postfach: postfach, reference: row.externalReference, receipt: receipt)
        let backend = backends.backend(for: postfach), limit = retry.attemptTimeout
        return try await withDeadline(limit, onTimeout: {
            PostfachError(code: .timeout, message: "no answer within \(limit?.seconds ?? 0) s")
        }) {
            try await backend.confirmation(of: item)
        }
    }
}

extension JSONDecoder {
    /// Reads receipts as ``JSONEncoder/receipts`` writes them.
    static var receipts: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
