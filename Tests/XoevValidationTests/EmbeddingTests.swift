import AmtsboteTestSupport
import CXMLShim
import Foundation
import Testing
import XoevValidation

/// A program that embeds Amtsbote and uses libxml2 for its own documents: libxml2's process-wide hooks that
/// Amtsbote sets must not change what libxml2 does outside Amtsbote's parses, and compiling needs no caller rules.
@Suite("Embedding: process-wide libxml2 hooks and concurrent compiles")
struct EmbeddingTests {
    @Test("outside Amtsbote's parses a load reaches the previous loader (libxml2's default); inside, it is refused")
    func defaultLoaderIsChained() throws {
        _ = Fixtures.ownSchemas   // Amtsbote's loader is installed
        let directory = try TestEnvironment.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("host-entity.xml")
        try Data("<host/>".utf8).write(to: file)

        #expect(axs_test_host_load(file.path) == 1, "the host's own load was refused")
        let refusedBefore = Validator.refusedExternalLoadsOnThisThread
        #expect(axs_test_host_load_during_parse(file.path) == 0, "a load inside an Amtsbote parse got through")
        #expect(Validator.refusedExternalLoadsOnThisThread > refusedBefore)
        #expect(axs_test_host_load(file.path) == 1, "after the parse the host's loads work again")
    }

    @Test("libxml2's messages outside a parser context are taken over during a parse, and the host's error functions are back afterwards")
    func strayMessagesStayInside() {
        // A BOM, then bytes that are not UTF-8 (refused up front now; libxml2 2.9/2.12 reported their decoding
        // failure to the thread's error functions, by default stderr, quoting the bytes).
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF, 0x4C, 0x6F, 0xA7, 0x94, 0x3C, 0x3F, 0xEE]
        var stray: UInt64 = 0
        var hostCalls: Int32 = 0
        let restored = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { axs_test_stray_messages_stay_inside($0.baseAddress, $0.count, &stray, &hostCalls) }
        }
        #expect(restored == 1, "the host's error functions were not put back")
        #expect(hostCalls == 0, "libxml2 reached the host's error functions during an Amtsbote parse")
        #expect(stray > 0, "the probe message was not taken over")
    }

    @Test("a loader the host installed before Amtsbote is chained, and never asked during Amtsbote's parses")
    func hostLoaderIsChained() async {
        // A fresh process: the host's loader must be in place before Amtsbote initialises.
        await #expect(processExitsWith: .success) {
            guard axs_test_install_host_loader() == 1 else { exit(10) }
            axs_global_init()
            guard axs_test_host_load("http://host.invalid/entity.xml") == 1, axs_test_host_loader_calls() == 1 else {
                exit(11)
            }
            guard axs_test_host_load_during_parse("http://host.invalid/entity.xml") == 0,
                  axs_test_host_loader_calls() == 1 else { exit(12) }
            guard axs_test_host_load("/etc/hostname") == 1, axs_test_host_loader_calls() == 2 else { exit(13) }
            exit(0)
        }
    }

    @Test("schema sets compiled on 6 threads at once all compile and validate; compilations never overlap")
    func concurrentCompiles() throws {
        let manifest = TestEnvironment.projectRoot.appendingPathComponent("Schemas").path
        let sample = Fixtures.sample("valid", try #require(Fixtures.samples("valid").first))
        let outcomes = ResultSlots(count: 6)
        DispatchQueue.concurrentPerform(iterations: 6) { index in
            let report = (try? SchemaSet(manifestAt: manifest)).flatMap { schemas in
                try? Validator(schemas: schemas).validate(file: sample)
            }
            outcomes.set(index, report)
        }
        for index in 0..<6 {
            #expect(outcomes.get(index)?.isValid == true, "compile \(index)")
        }
        #expect(axs_test_max_concurrent_compiles() == 1)
    }
}
