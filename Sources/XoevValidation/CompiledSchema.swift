import CXMLShim

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
