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
    /// No answer within ``RetryPolicy/confirmationDeadline``: marked `overdue`, no longer asked.
    public var overdue = 0

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
                summary.overdue += one.overdue
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
        var answered = row
        do {
            let (answer, receipt) = try await confirmation(of: row)
            if let answer {
                answered.confirmation = answer.verdict == .accepted ? .accepted : .rejected
                answered.confirmationEvidence = answer.evidence
                answered.confirmedAt = answer.issuedAt
                answered.reasonCode = nil
                answered.reason = nil
                if answer.verdict == .rejected {
                    answered.reasonCode = PostfachError.Code.receiverRejected.rawValue
                    answered.reason = String(answer.problems.joined(separator: "; ").prefix(4000))
                }
            } else if receipt.deliveredAt.addingTimeInterval(retry.confirmationDeadline.seconds) < Date() {
                answered.confirmation = .overdue
                answered.reasonCode = "postfach.confirmation-overdue"
                answered.reason = "no answer from the receiver within \(Int(retry.confirmationDeadline.seconds / 3600)) hours of the delivery"
            } else {
                summary.undecided = 1
                return summary
            }
        } catch let error as LedgerError {
            throw error
        } catch {
            summary.failed = 1
            let failure = error as? PostfachError ?? PostfachError(code: .unavailable, message: "\(error)")
            let untrusted = failure.code == .confirmationInvalid
            Counter(label: "amtsbote_confirmations_total", dimensions: [("verdict", untrusted ? "invalid" : "not-recorded")]).increment()
            logger.warning("receiver's answer not recorded", metadata: [
                "submission": "\(id)", "postfach": "\(row.postfach ?? "")", "code": "\(failure.code)"])
            // An answer that cannot be trusted stays visible on the row while it waits for a genuine one.
            guard untrusted, row.reasonCode != failure.code.rawValue || row.reason != failure.message else { return summary }
            answered.reasonCode = failure.code.rawValue
            answered.reason = String(failure.message.prefix(4000))
            _ = try await ledger.recordConfirmation(answered)
            return summary
        }
        guard try await ledger.recordConfirmation(answered) else { return summary }  // Another worker was first.
        let verdict = answered.confirmation?.rawValue ?? ""
        switch answered.confirmation {
        case .accepted: summary.accepted = 1
        case .rejected: summary.rejected = 1
        default: summary.overdue = 1
        }
        Counter(label: "amtsbote_confirmations_total", dimensions: [("verdict", verdict)]).increment()
        logger.info("receiver answered", metadata: ["submission": "\(id)", "postfach": "\(row.postfach ?? "")",
                                                    "verdict": "\(verdict)"])
        return summary
    }

    /// The backend's answer for one delivered row, within the attempt time limit, and the row's receipt. The backend
    /// asked is one of the kind that delivered.
    private func confirmation(of row: Submission) async throws -> (Confirmation?, Receipt) {
        guard let postfach = row.postfach, let deliveryID = row.deliveryId, let text = row.receipt,
              let receipt = try? JSONDecoder.receipts.decode(Receipt.self, from: Data(text.utf8)) else {
            throw PostfachError(code: .confirmationInvalid, message: "the row has no readable receipt")
        }
        guard let backend = backends.backend(for: postfach, kind: receipt.backend) else {
            throw PostfachError(code: .unavailable, message: "no '\(receipt.backend)' backend is configured to ask about this delivery")
        }
        let item = DeliveredItem(deliveryID: deliveryID, postfach: postfach, reference: row.externalReference, receipt: receipt)
        let limit = retry.attemptTimeout
        let answer = try await withDeadline(limit, onTimeout: {
            PostfachError(code: .timeout, message: "no answer within \(limit?.seconds ?? 0) s")
        }) {
            try await backend.confirmation(of: item)
        }
        return (answer, receipt)
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
