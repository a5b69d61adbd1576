import Foundation
import XoevReports
import XoevValidation

/// Validates many inputs on a bounded pool of threads sharing one schema set, and hands the outcomes back in input
/// order. Workers never wait for each other: the only lock guards the hand-over of finished outcomes, and a window
/// keeps at most `window` finished-but-unprinted outcomes in memory, so memory stays flat however many files there are.
final class ParallelValidation: @unchecked Sendable {
    // Safety: every mutable field is read and written only while `condition` is locked.
    private var inputs: InputFiles
    private let validator: Validator
    private let jobs: Int
    private let window: Int
    private let condition = NSCondition()
    private var issued = 0
    private var exhausted = false
    private var delivered = 0
    private var finished: [Int: Outcome] = [:]

    init(inputs: InputFiles, validator: Validator, jobs: Int) {
        self.inputs = inputs
        self.validator = validator
        self.jobs = max(1, jobs)
        self.window = max(64, self.jobs * 64)
    }

    /// Runs the pool and calls `consume` on the calling thread with each outcome, in input order.
    func run(_ consume: (Outcome) -> Void) {
        if jobs == 1 {
            while let source = inputs.next() { consume(ValidateCommand.validate(source, with: validator)) }
            return
        }
        for _ in 0..<jobs {
            let thread = Thread { [self] in work() }
            thread.stackSize = 1 << 20
            thread.start()
        }
        var index = 0
        while true {
            condition.lock()
            while finished[index] == nil && !(exhausted && index >= issued) { condition.wait() }
            guard let outcome = finished.removeValue(forKey: index) else {
                condition.unlock()
                return
            }
            delivered = index + 1
            condition.broadcast()
            condition.unlock()
            consume(outcome)
            index += 1
        }
    }

    private func work() {
        while true {
            condition.lock()
            while !exhausted && issued >= delivered + window { condition.wait() }
            // Walking folders is a few system calls per entry: done under the lock, reading files is not.
            guard !exhausted, let source = inputs.next() else {
                exhausted = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let index = issued
            issued += 1
            condition.unlock()
            let outcome = ValidateCommand.validate(source, with: validator)
            condition.lock()
            finished[index] = outcome
            condition.broadcast()
            condition.unlock()
        }
    }
}
