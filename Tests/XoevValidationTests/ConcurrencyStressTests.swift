import AmtsboteTestSupport
import Foundation
import Testing
import XoevValidation

/// Many documents validated at once against one shared schema set must give exactly the sequential results.
/// Run under ThreadSanitizer by scripts/sanitize.
@Suite("Concurrent validation against shared compiled schemas")
struct ConcurrencyStressTests {
    @Test("400 validations on 4 threads equal the sequential reports")
    func sharedSchemasUnderLoad() throws {
        let validator = Validator(schemas: Fixtures.ownSchemas)
        let files = Fixtures.samples("valid").map { Fixtures.sample("valid", $0) }
            + Fixtures.samples("invalid").map { Fixtures.sample("invalid", $0) }
        let expected = try files.map { try validator.validate(file: $0) }
        let documents = try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
        let results = ResultSlots(count: 400)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for index in stride(from: worker, to: 400, by: 4) {
                let which = index % files.count
                // Half from files, half from memory in small chunks: both entry points share the schemas.
                let report: ValidationReport?
                if index % 2 == 0 {
                    report = try? validator.validate(file: files[which])   // nil fails the comparison below
                } else {
                    let document = validator.startDocument(named: files[which])
                    let bytes = [UInt8](documents[which])
                    var offset = 0
                    while offset < bytes.count {
                        if document.feed(Array(bytes[offset..<min(offset + 777, bytes.count)])) { break }
                        offset += 777
                    }
                    report = document.finish()
                }
                results.set(index, report)
            }
        }
        for index in 0..<400 {
            #expect(results.get(index) == expected[index % files.count], "document \(index)")
        }
    }
}

/// Thread-safe result storage for the stress test.
final class ResultSlots: @unchecked Sendable {
    // Safety: every access holds `lock`.
    private let lock = NSLock()
    private var slots: [ValidationReport?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ report: ValidationReport?) {
        lock.lock()
        slots[index] = report
        lock.unlock()
    }

    func get(_ index: Int) -> ValidationReport? {
        lock.lock()
        defer { lock.unlock() }
        return slots[index]
    }
}
