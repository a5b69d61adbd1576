import Foundation

/// How long the payload of a finished submission is kept, per final state. Citizens' data may be kept only as long
/// as it is needed: a delivered payload is at the authority, a refused one is kept for the sender's questions and
/// the operator's checks. Purging deletes the payload (its spool file, or its copy in the ledger) and keeps the
/// audit row: ids, hashes, states, reason codes, receipt, and when it was purged. Unfinished work is never touched.
public struct RetentionPolicy: Sendable, Hashable {
    /// Keep-for periods in seconds by final state; a state without an entry is kept until purged by hand.
    public var periods: [SubmissionState: TimeInterval]

    public init(periods: [SubmissionState: TimeInterval]) {
        self.periods = periods
    }

    /// Delivered and duplicate payloads 7 days; rejected, unroutable, conflict, dead and abandoned 30 days.
    public static let `default` = RetentionPolicy(periods: [
        .delivered: 7 * 86_400, .duplicate: 7 * 86_400,
        .rejected: 30 * 86_400, .unroutable: 30 * 86_400, .conflict: 30 * 86_400, .dead: 30 * 86_400,
        .abandoned: 30 * 86_400,
    ])

    /// Parses `30d`, `12h`, `90m`, `45s` (a whole number and a unit).
    public static func seconds(of text: String) -> TimeInterval? {
        guard let unit = text.last, let number = Double(text.dropLast()), number >= 0, number == number.rounded() else {
            return nil
        }
        switch unit {
        case "d": return number * 86_400
        case "h": return number * 3_600
        case "m": return number * 60
        case "s": return number
        default: return nil
        }
    }
}

/// Deletes the payloads of finished submissions past their retention period and marks their rows purged.
public struct Purge: Sendable {
    public let ledger: any LedgerStore
    public let payloads: any PayloadStore

    /// Purges the payloads `ledger` records, kept in `payloads`.
    public init(ledger: any LedgerStore, payloads: any PayloadStore = FilesystemPayloadStore()) {
        self.ledger = ledger
        self.payloads = payloads
    }

    /// Purges (or with `dryRun` only lists) every submission in one of `states` (default: every final state of
    /// the policy) that became final before its period, or before `olderThan` when given. Returns the rows purged.
    public func run(policy: RetentionPolicy, olderThan: TimeInterval? = nil, states: [SubmissionState]? = nil,
                    dryRun: Bool = false, now: Date = Date()) async throws -> [Submission] {
        let selected = (states ?? SubmissionState.allCases).filter(\.isFinal)
        var purged: [Submission] = []
        for state in selected {
            guard let period = olderThan ?? policy.periods[state] else { continue }
            let cutoff = now.addingTimeInterval(-period)
            for observed in try await ledger.unpurged(state: state, finishedBefore: cutoff) {
                if dryRun { purged.append(observed); continue }
                // The row first (compare-and-set on its state and age), then the payload: a row that changed
                // meanwhile is left alone, and a crash in between leaves a marked row whose payload the next run removes.
                guard let row = try await ledger.markPurged(observed, cutoff: cutoff, at: now) else { continue }
                try await removePayload(of: row)
                purged.append(row)
            }
        }
        if !dryRun {
            for row in try await ledger.purgedWithPayload() { try await removePayload(of: row) }
            try await payloads.afterPurge()
        }
        return purged
    }

    private func removePayload(of row: Submission) async throws {
        guard let location = row.payloadLocation else { return }
        try await payloads.remove(location)
        try await ledger.forgetPayloadLocation(row)
    }
}
