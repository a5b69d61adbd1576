import AmtsbotePipeline
import Crypto
import Foundation
import Postfach
import Testing

/// The conformance suite every ``LedgerStore`` engine (and its ``PayloadStore``) must pass: compare-and-set
/// transitions, the delivery-id claim under races, batch claims that never hand a row out twice, leases (heartbeat,
/// expiry, fencing, release), re-queueing, retention, and payloads that survive the round trip byte for byte.
///
/// Call it with a way to make a fresh, empty store and to open it as several processes:
/// ```swift
/// @Test func conformance() async throws {
///     try await LedgerConformance.check { let path = directory.appendingPathComponent("test.sqlite").path; return { identity in try SQLiteLedger(path: path, identity: identity) } }
/// }
/// ```
public enum LedgerConformance {
    /// Opens the one store a check works on, as the process `identity` (several at once).
    public typealias Opener = @Sendable (ProcessIdentity) async throws -> any LedgerStore
    /// Makes a fresh, empty store and returns its opener.
    public typealias Factory = @Sendable () async throws -> Opener

    /// Identities of processes that run (this one and its parent) and of one that is gone.
    static var me: ProcessIdentity { .current }
    static var other: ProcessIdentity {
        ProcessIdentity.running(pid: getppid()) ?? ProcessIdentity(bootID: me.bootID, pid: me.pid, startTicks: me.startTicks + 2)
    }
    static var gone: ProcessIdentity { ProcessIdentity(bootID: me.bootID, pid: me.pid, startTicks: me.startTicks + 1) }

    /// Runs every check, each on a fresh store.
    public static func check(_ factory: Factory) async throws {
        try await compareAndSet(try await factory())
        try await deliveryIDClaim(try await factory())
        try await deliveryIDRace(try await factory())
        try await batchClaims(try await factory())
        try await concurrentClaims(try await factory())
        try await leases(try await factory())
        try await requeueAndRetention(try await factory())
        try await serviceFields(try await factory())
        try await idempotencyKeys(try await factory())
        try await confirmations(try await factory())
    }

    /// A row through intake to `validated`, ready to queue, with `deliveryId` and a payload hash.
    public static func validated(_ ledger: any LedgerStore, deliveryId: String, hash: String,
                                 postfach: String = "conformance") async throws -> Submission {
        let row = try await routed(ledger, deliveryId: deliveryId, hash: hash, postfach: postfach)
        #expect(try await ledger.update(row, from: .received))
        return row
    }

    /// A row recorded as `received`, with its verdict, delivery id, payload hash and Postfach set in memory only:
    /// what the intake holds just before it writes verdict and queueing at once.
    public static func routed(_ ledger: any LedgerStore, deliveryId: String, hash: String,
                              postfach: String = "conformance") async throws -> Submission {
        var row = try await ledger.recordReceived(source: "conformance-\(deliveryId)", at: Date())
        row.state = .validated
        row.deliveryId = deliveryId
        row.payloadSHA256 = hash
        row.payloadSize = 10
        row.payloadLocation = "/nonexistent/\(deliveryId)"
        row.postfach = postfach
        return row
    }

    static func compareAndSet(_ open: Opener) async throws {
        let ledger = try await open(me)
        let otherLedger = try await open(other)
        defer { Task { await ledger.close(); await otherLedger.close() } }
        let row = try await ledger.recordReceived(source: "upload", at: Date(timeIntervalSince1970: 1_800_000_000))
        #expect(row.state == .received)
        #expect(row.owner == me.description)
        #expect(row.id != nil)
        #expect(try await ledger.newestID() == row.id)
        var changed = row
        changed.state = .rejected
        changed.owner = nil
        changed.reasonCode = "schema.value.type"
        #expect(try await !otherLedger.update(changed, from: .received), "another process may not write a row it does not own")
        #expect(try await !ledger.update(changed, from: .validated), "a transition from the wrong state changes nothing")
        #expect(try await ledger.update(changed, from: .received))
        let stored = try #require(try await ledger.submission(row.id!))
        #expect(stored.state == .rejected && stored.reasonCode == "schema.value.type" && stored.owner == nil)
        #expect(stored.receivedAt == Date(timeIntervalSince1970: 1_800_000_000))
        #expect(try await ledger.counts() == [.rejected: 1])

        // Adoption: a gone owner's row is taken over; a running owner's is not.
        let goneLedger = try await open(gone)
        let orphan = try await goneLedger.recordReceived(source: "orphan", at: Date())
        await goneLedger.close()
        let running = try await otherLedger.recordReceived(source: "running", at: Date())
        #expect(try await ledger.adopt(running, evenIfOwnerRuns: false) == nil)
        let adopted = try #require(try await ledger.adopt(orphan, evenIfOwnerRuns: false))
        #expect(adopted.owner == me.description)
        #expect(try await otherLedger.adopt(orphan, evenIfOwnerRuns: true) == nil, "the observed owner changed: no take-over")
        #expect(try await ledger.submissions(states: [.received], limit: nil).map(\.id) == [orphan.id, running.id])
        #expect(try await ledger.submissions(states: nil, limit: 1).map(\.id) == [row.id])
    }

    static func deliveryIDClaim(_ open: Opener) async throws {
        let ledger = try await open(me)
        defer { Task { await ledger.close() } }
        let first = try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "id-1", hash: "aa"), leaseFor: nil)
        #expect(first.state == .queued && first.owner == nil && first.nextAttemptAt != nil)
        let resend = try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "id-1", hash: "aa"), leaseFor: nil)
        #expect(resend.state == .duplicate && resend.duplicateOf == first.id && resend.reasonCode == "ledger.duplicate")
        let forged = try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "id-1", hash: "bb"), leaseFor: nil)
        #expect(forged.state == .conflict && forged.duplicateOf == first.id && forged.reasonCode == "ledger.id-conflict")
        let leased = try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "id-2", hash: "cc"),
                                                    leaseFor: .seconds(60))
        #expect(leased.state == .running && leased.attempts == 1 && leased.leaseToken != nil && leased.owner == me.description)
        let stored = try #require(try await ledger.submission(leased.id!))
        #expect(stored.leaseToken == leased.leaseToken && stored.state == .running)
        #expect(stored.leaseUntil.map { $0 > Date().addingTimeInterval(30) } == true, "leased for about a minute")
        #expect(try await ledger.counts() == [.queued: 1, .duplicate: 1, .conflict: 1, .running: 1])

        // Straight from `received` (the intake writes verdict and queueing at once): queued, a duplicate, leased;
        // a row that is not in the expected state is not this call's to write.
        let direct = try await ledger.claimAndQueue(try await routed(ledger, deliveryId: "id-3", hash: "dd"),
                                                    leaseFor: nil, from: .received)
        #expect(direct.state == .queued && direct.owner == nil && direct.nextAttemptAt != nil)
        #expect(try await ledger.submission(direct.id!)?.payloadSHA256 == "dd", "the whole row is written")
        let directResend = try await ledger.claimAndQueue(try await routed(ledger, deliveryId: "id-3", hash: "dd"),
                                                          leaseFor: nil, from: .received)
        #expect(directResend.state == .duplicate && directResend.duplicateOf == direct.id)
        let directLeased = try await ledger.claimAndQueue(try await routed(ledger, deliveryId: "id-4", hash: "ee"),
                                                          leaseFor: .seconds(60), from: .received)
        #expect(directLeased.state == .running && directLeased.leaseToken != nil && directLeased.attempts == 1)
        #expect(try await ledger.submission(directLeased.id!).flatMap(\.leaseUntil).map { $0 > Date().addingTimeInterval(30) } == true)
        let notValidated = try await routed(ledger, deliveryId: "id-5", hash: "ff")
        await #expect(throws: LedgerError.self, "the row is `received`, not `validated`") {
            try await ledger.claimAndQueue(notValidated, leaseFor: nil)
        }
        #expect(try await ledger.submission(notValidated.id!)?.state == .received)
        let reclaimed = try await ledger.claimAndQueue(notValidated, leaseFor: nil, from: .received)
        #expect(reclaimed.state == .queued, "the delivery id of a refused write is still the row's own")

        // A row taken over by another process before it is queued: the write is refused, and its delivery id is not
        // left claimed by it (another row with that id is queued, not a duplicate of a row that never got there).
        let otherLedger = try await open(other)
        defer { Task { await otherLedger.close() } }
        let takenOver = try await routed(ledger, deliveryId: "id-6", hash: "gg")
        let stored6 = try #require(try await ledger.submission(takenOver.id!))
        #expect(try await otherLedger.adopt(stored6, evenIfOwnerRuns: true) != nil)
        await #expect(throws: LedgerError.self, "the row is another process's now") {
            try await ledger.claimAndQueue(takenOver, leaseFor: nil, from: .received)
        }
        let resent = try await otherLedger.claimAndQueue(try await routed(otherLedger, deliveryId: "id-6", hash: "gg"),
                                                         leaseFor: nil, from: .received)
        #expect(resent.state == .queued, "no claim was left behind by the refused write")
    }

    /// Many processes queue rows under one delivery id at once: exactly one owns it.
    static func deliveryIDRace(_ open: Opener) async throws {
        for round in 0..<5 {
            let ledgers = try await (0..<6).asyncMap { _ in try await open(me) }
            let rows = try await ledgers.enumerated().asyncMap { index, ledger in
                try await validated(ledger, deliveryId: "race-\(round)", hash: index % 2 == 0 ? "even" : "odd")
            }
            let outcomes = try await withThrowingTaskGroup(of: Submission.self) { group in
                for (ledger, row) in zip(ledgers, rows) {
                    group.addTask { try await ledger.claimAndQueue(row, leaseFor: nil) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let owners = outcomes.filter { $0.state == .queued }
            #expect(owners.count == 1, "round \(round): one owner, found \(outcomes.map(\.state))")
            for outcome in outcomes where outcome.state != .queued {
                #expect(outcome.duplicateOf == owners.first?.id)
                #expect(outcome.state == (outcome.payloadSHA256 == owners.first?.payloadSHA256 ? .duplicate : .conflict))
            }
            for ledger in ledgers { await ledger.close() }
        }
    }

    static func batchClaims(_ open: Opener) async throws {
        let ledger = try await open(me)
        defer { Task { await ledger.close() } }
        var ids: [Int64] = []
        for n in 0..<5 {
            ids.append(try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "b-\(n)", hash: "h\(n)"),
                                                      leaseFor: nil).id!)
        }
        #expect(try await ledger.claimDue(limit: 3, dueBy: Date().addingTimeInterval(-3600), leaseFor: .seconds(60)).isEmpty,
                "nothing was due an hour ago")
        let queued = try await ledger.queueByPostfach()
        #expect(queued.map(\.postfach) == ["conformance"])
        #expect(queued.first?.queued == 5 && queued.first?.running == 0)
        #expect(queued.first?.oldestDue.map { $0 <= Date().addingTimeInterval(1) } == true)
        let batch = try await ledger.claimDue(limit: 3, dueBy: nil, leaseFor: .seconds(60))
        #expect(batch.count == 3, "the limit is kept")
        let afterClaim = try await ledger.queueByPostfach()
        #expect(afterClaim.map { [$0.queued, $0.running] } == [[2, 3]], "\(afterClaim)")
        #expect(Set(batch.compactMap(\.leaseToken)).count == 3, "each claim has its own token")
        #expect(batch.allSatisfy { $0.state == .running && $0.attempts == 1 && $0.owner == me.description })
        let rest = try await ledger.claimDue(limit: 10, dueBy: nil, leaseFor: .seconds(60))
        #expect(Set((batch + rest).compactMap(\.id)) == Set(ids), "every due row once")
        #expect(try await ledger.claimDue(limit: 10, dueBy: nil, leaseFor: .seconds(60)).isEmpty)
        #expect(try await ledger.counts() == [.running: 5])
        let next = try #require(try await ledger.nextAttempt(), "the earliest lease expiry")
        #expect(next > Date().addingTimeInterval(30))
    }

    /// Several processes claim from one queue at once: every row is handed out exactly once.
    static func concurrentClaims(_ open: Opener) async throws {
        let setup = try await open(me)
        let total = 60
        for n in 0..<total {
            _ = try await setup.claimAndQueue(try await validated(setup, deliveryId: "c-\(n)", hash: "h\(n)"), leaseFor: nil)
        }
        await setup.close()
        let ledgers = try await (0..<4).asyncMap { _ in try await open(me) }
        let claimed = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for ledger in ledgers {
                group.addTask {
                    var mine: [Int64] = []
                    while true {
                        let batch = try await ledger.claimDue(limit: 3, dueBy: nil, leaseFor: .seconds(60))
                        if batch.isEmpty { return mine }
                        mine += batch.compactMap(\.id)
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claimed.count == total, "claimed \(claimed.count) times for \(total) rows")
        #expect(Set(claimed).count == total, "no row twice")
        for ledger in ledgers { await ledger.close() }
    }

    static func leases(_ open: Opener) async throws {
        let ledger = try await open(me)
        let otherLedger = try await open(other)
        defer { Task { await ledger.close(); await otherLedger.close() } }
        for n in 0..<3 {
            _ = try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "l-\(n)", hash: "h\(n)"), leaseFor: nil)
        }
        let claimed = try await ledger.claimDue(limit: 3, dueBy: nil, leaseFor: .seconds(60))
        let (kept, expiring, released) = (claimed[0], claimed[1], claimed[2])

        // Heartbeat: held leases are extended; a wrong token holds nothing.
        var forged = kept
        forged.leaseToken = "not-the-token"
        #expect(try await ledger.extendLeases([kept, forged], by: .seconds(120)) == [kept.id!])
        let extended = try #require(try await ledger.submission(kept.id!)).leaseUntil
        #expect(extended.map { $0 > Date().addingTimeInterval(90) } == true)

        // Release: back to the queue, the attempt not counted, due now.
        #expect(try await ledger.release(released))
        #expect(try await !ledger.release(released), "released once")
        let again = try #require(try await ledger.submission(released.id!))
        #expect(again.state == .queued && again.attempts == 0 && again.leaseToken == nil && again.owner == nil)

        // Expiry: a lease not extended runs out, and any process puts the row back.
        #expect(try await ledger.extendLeases([expiring], by: .milliseconds(1)) == [expiring.id!])
        let expiry = try #require(try await ledger.submission(expiring.id!)?.leaseUntil)
        try await waitUntil("the lease ends") { Date() > expiry.addingTimeInterval(0.01) }
        #expect(try await !ledger.recordReference(expiring, reference: "too-late"),
                "a lease that ran out records nothing, even before another process put the row back")
        let requeued = try await otherLedger.requeueExpiredLeases()
        #expect(requeued.map(\.id) == [expiring.id], "only the expired lease")
        #expect(requeued.first?.state == .queued && requeued.first?.leaseToken == nil)
        #expect(try await ledger.extendLeases([expiring], by: .seconds(60)).isEmpty, "a lost lease is not extended")

        // Fencing: the other process claims the row again; the first holder's outcome changes nothing.
        let retaken = try await otherLedger.claimDue(limit: 10, dueBy: nil, leaseFor: .seconds(60))
        #expect(Set(retaken.compactMap(\.id)) == [expiring.id!, released.id!])
        let theirs = try #require(retaken.first { $0.id == expiring.id })
        #expect(theirs.attempts == 2 && theirs.leaseToken != expiring.leaseToken)
        var late = expiring
        late.state = .dead
        late.reasonCode = "postfach.rejected"
        #expect(try await !ledger.finishAttempt(late), "a stale token never finishes")
        // References (a backend's server-assigned id) are recorded under the lease only, and kept by the outcome.
        #expect(try await !ledger.recordReference(expiring, reference: "stale"), "a stale token records nothing")
        #expect(try await otherLedger.recordReference(theirs, reference: "transfer-1"))
        #expect(try await ledger.submission(expiring.id!)?.externalReference == "transfer-1")
        var outcome = theirs
        outcome.state = .delivered
        outcome.receipt = "{}"
        #expect(try await otherLedger.finishAttempt(outcome))
        #expect(try await !otherLedger.finishAttempt(outcome), "finished once")
        let delivered = try #require(try await ledger.submission(expiring.id!))
        #expect(delivered.state == .delivered && delivered.leaseToken == nil && delivered.owner == nil && delivered.attempts == 2)
        #expect(delivered.externalReference == "transfer-1", "the outcome keeps the recorded reference")

        // A retry outcome: queued again at the given time.
        var retry = kept
        retry.state = .queued
        retry.nextAttemptAt = Date().addingTimeInterval(3600)
        #expect(try await ledger.finishAttempt(retry))
        #expect(try await ledger.claimDue(limit: 10, dueBy: Date().addingTimeInterval(60), leaseFor: .seconds(60)).isEmpty,
                "the retry is due in an hour, and the other rows are running or delivered")

        // Rescue: a running row is put back at once when its token still matches.
        let rescuedRow = try #require(retaken.first { $0.id == released.id })
        #expect(try await ledger.rescue(rescuedRow)?.state == .queued)
        #expect(try await ledger.rescue(rescuedRow) == nil, "the token changed")
    }

    /// Receivers' answers after delivery: due rows are handed out once per check interval, across processes, and an
    /// answer is recorded once, only on a delivered row that awaits one.
    static func confirmations(_ open: Opener) async throws {
        let ledger = try await open(me)
        let otherLedger = try await open(other)
        defer { Task { await ledger.close(); await otherLedger.close() } }
        var delivered: [Submission] = []
        for n in 0..<3 {
            let leased = try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "c-\(n)", hash: "h\(n)"),
                                                       leaseFor: .seconds(60))
            var outcome = leased
            outcome.state = .delivered
            outcome.receipt = "{}"
            // The first two await the receiver's answer, one of them only in an hour; the third awaits none.
            if n < 2 {
                outcome.confirmation = .pending
                outcome.confirmationDueAt = n == 0 ? Date().addingTimeInterval(-1) : Date().addingTimeInterval(3600)
            }
            #expect(try await ledger.finishAttempt(outcome))
            delivered.append(outcome)
        }
        let stored = try #require(try await ledger.submission(delivered[0].id!))
        #expect(stored.confirmation == .pending && stored.confirmationDueAt != nil, "the outcome records that an answer is awaited")
        #expect(try await ledger.submission(delivered[2].id!)?.confirmation == nil)

        let due = try await ledger.dueConfirmations(limit: 10, recheckAfter: .seconds(600))
        #expect(due.map(\.id) == [delivered[0].id], "only the row that awaits an answer and is due")
        #expect(try await otherLedger.dueConfirmations(limit: 10, recheckAfter: .seconds(600)).isEmpty,
                "a row handed out is asked again only after the interval, by any process")
        let rechecked = try #require(try await ledger.submission(delivered[0].id!)?.confirmationDueAt)
        #expect(rechecked > Date().addingTimeInterval(500))

        // An answer not counted: its reason is kept, and the row waits on with its next check unchanged.
        var untrusted = due[0]
        untrusted.reasonCode = "postfach.confirmation-invalid"
        untrusted.reason = "signature"
        #expect(try await otherLedger.recordConfirmation(untrusted))
        let stillWaiting = try #require(try await ledger.submission(delivered[0].id!))
        #expect(stillWaiting.confirmation == .pending && stillWaiting.reasonCode == "postfach.confirmation-invalid")
        #expect(stillWaiting.confirmationDueAt.map { abs($0.timeIntervalSince(rechecked)) < 1 } == true)

        var answered = due[0]
        answered.confirmation = .rejected
        answered.confirmationEvidence = "header.claims.signature"
        answered.confirmedAt = Date(timeIntervalSince1970: 1_800_000_000)
        answered.reasonCode = "postfach.receiver-rejected"
        answered.reason = "the office cannot process it"
        #expect(try await otherLedger.recordConfirmation(answered))
        #expect(try await !ledger.recordConfirmation(answered), "an answer is recorded once")
        let final = try #require(try await ledger.submission(delivered[0].id!))
        #expect(final.state == .delivered && final.confirmation == .rejected && final.confirmationDueAt == nil)
        #expect(final.confirmationEvidence == "header.claims.signature" && final.reasonCode == "postfach.receiver-rejected")
        #expect(final.confirmedAt.map { abs($0.timeIntervalSince1970 - 1_800_000_000) < 1 } == true)

        var unasked = delivered[2]
        unasked.confirmation = .accepted
        #expect(try await !ledger.recordConfirmation(unasked), "a row that awaits no answer takes none")
        #expect(try await ledger.submission(delivered[2].id!)?.confirmation == nil)
    }

    static func requeueAndRetention(_ open: Opener) async throws {
        let ledger = try await open(me)
        defer { Task { await ledger.close() } }
        let row = try await ledger.claimAndQueue(try await validated(ledger, deliveryId: "r-1", hash: "h"), leaseFor: .seconds(60))
        var dead = row
        dead.state = .dead
        dead.reasonCode = "postfach.rejected"
        #expect(try await ledger.finishAttempt(dead))
        let observed = try #require(try await ledger.submission(row.id!))
        #expect(observed.state == .dead && observed.attempts == 1)
        let requeued = try #require(try await ledger.requeue(observed))
        #expect(requeued.state == .queued && requeued.attempts == 0)
        #expect(try await ledger.requeue(observed) == nil, "the observed state changed")

        // Retention: a final row past its period is marked (once), its payload forgotten once gone.
        let claimed = try #require(try await ledger.claimDue(limit: 1, dueBy: nil, leaseFor: .seconds(60)).first)
        var delivered = claimed
        delivered.state = .delivered
        #expect(try await ledger.finishAttempt(delivered))
        let later = Date().addingTimeInterval(3600)
        #expect(try await ledger.unpurged(state: .queued, finishedBefore: later).isEmpty, "unfinished work is never purged")
        let candidates = try await ledger.unpurged(state: .delivered, finishedBefore: later)
        #expect(candidates.map(\.id) == [row.id])
        #expect(try await ledger.unpurged(state: .delivered, finishedBefore: Date().addingTimeInterval(-3600)).isEmpty)
        let marked = try #require(try await ledger.markPurged(candidates[0], cutoff: later, at: later))
        #expect(marked.purgedAt != nil)
        #expect(try await ledger.markPurged(candidates[0], cutoff: later, at: later) == nil, "purged once")
        #expect(try await ledger.purgedWithPayload().map(\.id) == [row.id])
        try await ledger.forgetPayloadLocation(marked)
        #expect(try await ledger.purgedWithPayload().isEmpty)
        let kept = try #require(try await ledger.submission(row.id!))
        #expect(kept.payloadLocation == nil && kept.payloadSHA256 == "h" && kept.state == .delivered)
        var deadAgain = kept
        deadAgain.state = .dead
        #expect(try await ledger.requeue(deadAgain) == nil, "a purged row is never re-queued")
    }

    /// The payload store: a payload of several chunks survives keep → local file → remove byte for byte.
    /// The client, the portal's metadata and the findings survive the round trip, and every write keeps them.
    static func serviceFields(_ open: Opener) async throws {
        let ledger = try await open(me)
        defer { Task { await ledger.close() } }
        let portal = #"{"servicekonto":{"level":"substantial"},"reference":"P-1"}"#
        var row = try await ledger.recordReceived(source: "service", at: Date(),
                                                  origin: IntakeOrigin(client: "portal-a", portalMetadata: portal))
        #expect(row.client == "portal-a")
        #expect(row.portalMetadata == portal)
        row.state = .rejected
        row.owner = nil
        row.findings = #"[{"code":"schema.element.unexpected","severity":"error","line":3,"column":7,"path":"/a"}]"#
        #expect(try await ledger.update(row, from: .received))
        let id = try #require(row.id)
        let read = try #require(try await ledger.submission(id))
        #expect(read.client == "portal-a")
        #expect(read.portalMetadata == portal)
        #expect(read.storedFindings == [StoredFinding(code: "schema.element.unexpected", severity: "error", line: 3,
                                                      column: 7, path: "/a")])
    }

    /// One reservation per key at a time, across processes; a completed key replays its outcome; a reservation
    /// whose time ran out is taken over; released keys are free again; completed keys are purged by age.
    static func idempotencyKeys(_ open: Opener) async throws {
        let ledger = try await open(me)
        let otherLedger = try await open(other)
        defer { Task { await ledger.close(); await otherLedger.close() } }
        // Two processes race for one key: exactly one gets it.
        let answers = try await withThrowingTaskGroup(of: IdempotencyReservation.self) { group in
            for store in [ledger, otherLedger, ledger, otherLedger] {
                group.addTask { try await store.reserveIdempotencyKey(client: "a", key: "k1", for: .seconds(60)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.filter { $0 == .reserved }.count == 1)
        #expect(answers.filter { $0 == .inFlight }.count == 3)
        // Keys are per client.
        #expect(try await otherLedger.reserveIdempotencyKey(client: "b", key: "k1", for: .seconds(60)) == .reserved)
        let outcome = IdempotencyOutcome(requestSHA256: "abc", submission: 7, responseStatus: 202, responseBody: "{}")
        try await ledger.completeIdempotencyKey(client: "a", key: "k1", outcome: outcome)
        #expect(try await otherLedger.reserveIdempotencyKey(client: "a", key: "k1", for: .seconds(60)) == .completed(outcome))
        // A released reservation frees the key; a completed one is not released.
        try await ledger.releaseIdempotencyKey(client: "b", key: "k1")
        #expect(try await ledger.reserveIdempotencyKey(client: "b", key: "k1", for: .seconds(60)) == .reserved)
        try await ledger.releaseIdempotencyKey(client: "a", key: "k1")
        #expect(try await ledger.reserveIdempotencyKey(client: "a", key: "k1", for: .seconds(60)) == .completed(outcome))
        // A reservation whose time ran out (its process died mid-request) is taken over.
        #expect(try await ledger.reserveIdempotencyKey(client: "a", key: "k2", for: .zero) == .reserved)
        try await waitUntil("the zero-length reservation has run out") {
            try await otherLedger.reserveIdempotencyKey(client: "a", key: "k2", for: .seconds(60)) == .reserved
        }
        #expect(try await ledger.reserveIdempotencyKey(client: "a", key: "k2", for: .seconds(60)) == .inFlight)
        // Purging by age: only completed keys recorded before the date.
        #expect(try await ledger.purgeIdempotencyKeys(completedBefore: Date().addingTimeInterval(-3600)) == 0)
        #expect(try await ledger.purgeIdempotencyKeys(completedBefore: Date().addingTimeInterval(3600)) == 1)
        #expect(try await ledger.reserveIdempotencyKey(client: "a", key: "k1", for: .seconds(60)) == .reserved)
        #expect(try await ledger.reserveIdempotencyKey(client: "a", key: "k2", for: .seconds(60)) == .inFlight)
    }

    public static func checkPayloads(_ store: any PayloadStore, workspace: URL, submission: Int64) async throws {
        var bytes = Data()
        var generator = SystemRandomNumberGenerator()
        while bytes.count < 700_000 { bytes.append(contentsOf: withUnsafeBytes(of: generator.next()) { Array($0) }) }
        let file = workspace.appendingPathComponent("\(submission).xml")
        try bytes.write(to: file)
        let location = try await store.keep(spooled: file, submission: submission)
        let copy = try await store.withLocalFile(location) { url in try Data(contentsOf: url) }
        #expect(copy.count == bytes.count)
        #expect(SHA256.hash(data: copy) == SHA256.hash(data: bytes), "the payload arrives byte for byte")
        let empty = workspace.appendingPathComponent("\(submission + 1).xml")
        try Data().write(to: empty)
        let emptyLocation = try await store.keep(spooled: empty, submission: submission + 1)
        #expect(try await store.withLocalFile(emptyLocation) { try Data(contentsOf: $0) }.isEmpty, "an empty payload too")
        try await store.remove(location)
        try await store.remove(location)  // Already gone: still fine.
        await #expect(throws: (any Error).self, "a removed payload cannot be read") {
            try await store.withLocalFile(location) { _ in () }
        }
        try await checkPayloadsInMemory(store, submission: submission + 2)
    }

    /// A store that takes small payloads in memory (``PayloadStore/inMemoryLimit`` > 0) keeps them durably and hands
    /// them back byte for byte, in memory and as a file; a store that does not says so by refusing them.
    static func checkPayloadsInMemory(_ store: any PayloadStore, submission: Int64) async throws {
        guard store.inMemoryLimit > 0 else {
            await #expect(throws: (any Error).self, "a store without an in-memory limit refuses bytes") {
                _ = try await store.keep(bytes: [1, 2, 3], submission: submission)
            }
            return
        }
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<store.inMemoryLimit).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let location = try await store.keep(bytes: bytes, submission: submission)
        let handed = try await store.withPayload(location) { try $0.contents() }
        #expect(handed == Data(bytes), "a payload kept from memory arrives byte for byte")
        #expect(try await store.withLocalFile(location) { try Data(contentsOf: $0) } == Data(bytes), "also as a file")
        // Kept again under the same submission (an intake tried again): replaced, not doubled.
        let again = try await store.keep(bytes: Array(bytes.prefix(10)), submission: submission)
        #expect(try await store.withPayload(again) { try $0.contents() } == Data(bytes.prefix(10)))
        let empty = try await store.keep(bytes: [], submission: submission + 1)
        #expect(try await store.withPayload(empty) { try $0.contents() }.isEmpty, "an empty payload too")
        try await store.removeIncomplete(submission: submission + 1)
        await #expect(throws: (any Error).self, "an interrupted intake's payload is removed") {
            try await store.withPayload(empty) { _ in () }
        }
        try await store.remove(again)
        try await store.remove(again)  // Already gone: still fine.
        await #expect(throws: (any Error).self, "a removed payload cannot be read") {
            try await store.withPayload(again) { _ in () }
        }
    }
}

/// Polls `condition` until it holds (a hang guard fails the check after 120 s).
func waitUntil(_ what: String, _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(120)
    while try await !condition() {
        if ContinuousClock.now > deadline { Issue.record("waited 120 s for: \(what)"); return }
        try await Task.sleep(for: .milliseconds(5))
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
