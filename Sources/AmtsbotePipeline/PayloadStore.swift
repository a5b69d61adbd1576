import Foundation

/// Where payloads are kept, unchanged, from intake until retention purges them, readable by every process that
/// delivers. The spool first writes each payload to a local file while validating it; the store then keeps it.
public protocol PayloadStore: Sendable {
    /// Keeps the complete, flushed spool file of `submission` and returns the location to record in the ledger.
    /// The store may move the file away (the filesystem store keeps it where it is).
    func keep(spooled file: URL, submission: Int64) async throws -> String
    /// Runs `body` with a local file holding the payload at `location`: the kept file itself, or a temporary copy
    /// streamed out of the store and removed afterwards.
    func withLocalFile<T: Sendable>(_ location: String, _ body: (URL) async throws -> T) async throws -> T
    /// Deletes the payload at `location` (already gone counts as deleted).
    func remove(_ location: String) async throws
    /// Deletes whatever an interrupted ``keep(spooled:submission:)`` of `submission` left behind.
    func removeIncomplete(submission: Int64) async throws
}

/// Payloads as files in the spool folder (the embedded default): kept where the spool wrote them.
public struct FilesystemPayloadStore: PayloadStore {
    public init() {}

    public func keep(spooled file: URL, submission: Int64) async throws -> String { file.path }

    public func withLocalFile<T: Sendable>(_ location: String, _ body: (URL) async throws -> T) async throws -> T {
        guard access(location, R_OK) == 0 else {
            throw SpoolError("the payload \(location) cannot be read: \(String(cString: strerror(errno)))")
        }
        return try await body(URL(fileURLWithPath: location))
    }

    public func remove(_ location: String) async throws {
        guard unlink(location) == 0 || errno == ENOENT else {
            throw SpoolError("cannot delete \(location): \(String(cString: strerror(errno)))")
        }
    }

    public func removeIncomplete(submission: Int64) async throws {}
}
