import CXMLShim
import Foundation

/// One XSD compiled by libxml2. Read-only after compilation, so it is shared by all validations at once.
final class CompiledSchema: @unchecked Sendable {
    // Safety: libxml2 only reads a compiled xmlSchema while validating; it is freed once, in deinit.
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }

    deinit { axs_schema_free(handle) }
}

/// A loaded OASIS XML catalog, kept alive while schemas compile.
final class LoadedCatalog: @unchecked Sendable {
    // Safety: only used during schema compilation, which the schema set does on one thread.
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }

    deinit { axs_catalog_free(handle) }
}

/// The capture paths of one schema entry, parsed once and shared read-only by every document of that entry.
final class CaptureSet: @unchecked Sendable {
    // Safety: the C set is immutable after creation and freed once, in deinit.
    let handle: OpaquePointer
    /// Capture names, in the order of the C set's paths.
    let names: [String]

    init?(_ captures: [(name: String, path: String)]) {
        guard !captures.isEmpty else { return nil }
        var pointers = captures.map { strdup($0.path) }
        defer { pointers.forEach { free($0) } }
        let handle = pointers.withUnsafeMutableBufferPointer { buffer in
            buffer.withMemoryRebound(to: UnsafePointer<CChar>?.self) {
                axs_capture_set_new($0.baseAddress, Int32($0.count))
            }
        }
        guard let handle else { return nil }
        self.handle = handle
        names = captures.map(\.name)
    }

    deinit { axs_capture_set_free(handle) }
}
