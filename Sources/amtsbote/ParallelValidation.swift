import Foundation
import XoevValidation

/// Validates many inputs on a bounded pool of threads sharing one schema set, and hands the outcomes back in input
/// order. Workers never wait for each other: the only lock guards the hand-over of finished outcomes, and a window
/// keeps at most `window` finished-but-unprinted outcomes in memory, so memory stays flat however many files there are.
final class ParallelValidation: @unchecked Sendable {
    // Safety: every mutable field is read and written only while `condition` is locked.
    private let inputs: [InputSource]
    private let validator: Validator
    private let jobs: Int
    private let window: Int
    private let condition = NSCondition()
    private var next = 0
    private var delivered = 0
    private var finished: [Int: Outcome] = [:]

    init(inputs: [InputSource], validator: Validator, jobs: Int) {
        self.inputs = inputs
        self.validator = validator
        self.jobs = max(1, jobs)
        self.window = max(64, self.jobs * 64)
    }

    /// Runs the pool and calls `consume` on the calling thread with each outcome, in input order.
    func run(_ consume: (Outcome) -> Void) {
        if jobs == 1 {
            for source in inputs { consume(ValidateCommand.validate(source, with: validator)) }
            return
        }
        for _ in 0..<min(jobs, inputs.count) {
            let thread = Thread { [self] in work() }
            thread.stackSize = 1 << 20
            thread.start()
        }
        for index in inputs.indices {
            condition.lock()
            while finished[index] == nil { condition.wait() }
            let outcome = finished.removeValue(forKey: index)!
            delivered = index + 1
            condition.broadcast()
            condition.unlock()
            consume(outcome)
        }
    }

    private func work() {
        while true {
            condition.lock()
            while next < inputs.count && next >= delivered + window { condition.wait() }
            guard next < inputs.count else {
                condition.unlock()
                return
            }
            let index = next
            next += 1
            condition.unlock()
            let outcome = ValidateCommand.validate(inputs[index], with: validator)
            condition.lock()
            finished[index] = outcome
            condition.broadcast()
            condition.unlock()
        }
    }
}
