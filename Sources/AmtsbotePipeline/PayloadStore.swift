import Foundation
import Postfach

/// Where payloads are kept, unchanged, from intake until retention purges them, readable by every process that
/// delivers. The spool first writes each payload to a local file while validating it; the store then keeps it.
public protocol PayloadStore: Sendable {
    /// Payloads of at most this many bytes that arrive in pieces (the service's intake) may be handed over in
    /// memory, through ``keep(bytes:submission:)``, without a spool file; 0: every payload comes as a spool file.
    var inMemoryLimit: Int { get }
    /// Keeps the complete, flushed spool file of `submission` and returns the location to record in the ledger.
    /// The store may move the file away (the filesystem store keeps it where it is).
    func keep(spooled file: URL, submission: Int64) async throws -> String
    /// Keeps a payload of at most ``inMemoryLimit`` bytes handed over in memory, durably before it returns, and
    /// returns the location to record in the ledger.
    func keep(bytes: [UInt8], submission: Int64) async throws -> String
    /// Runs `body` with a local file holding the payload at `location`: the kept file itself, or a temporary copy
    /// streamed out of the store and removed afterwards.
    func withLocalFile<T: Sendable>(_ location: String, _ body: (URL) async throws -> T) async throws -> T
    /// Runs `body` with the payload at `location` for a delivery: in memory where the store keeps it so, otherwise
    /// as in ``withLocalFile(_:_:)``.
    func withPayload<T: Sendable>(_ location: String, _ body: (PayloadSource) async throws -> T) async throws -> T
    /// Deletes the payload at `location` (already gone counts as deleted).
    func remove(_ location: String) async throws
    /// Deletes whatever an interrupted ``keep(spooled:submission:)`` of `submission` left behind.
    func removeIncomplete(submission: Int64) async throws
    /// Runs once at the end of a purge: whatever the store does beyond deleting each payload.
    func afterPurge() async throws
}

extension PayloadStore {
    /// Every payload comes as a spool file.
    public var inMemoryLimit: Int { 0 }

    /// Never called on a store whose ``inMemoryLimit`` is 0.
    public func keep(bytes: [UInt8], submission: Int64) async throws -> String {
        throw SpoolError("this payload store keeps payloads from spool files only")
    }

    /// Nothing beyond deleting each payload.
    public func afterPurge() async throws {}

    /// The payload as a local file.
    public func withPayload<T: Sendable>(_ location: String, _ body: (PayloadSource) async throws -> T) async throws -> T {
        try await withLocalFile(location) { try await body(.file($0)) }
    }
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

/// The embedded default's payloads: small ones the service's intake hands over in memory are kept in the SQLite
/// ledger itself (table `payload`), written in the ledger's group commits together with concurrent intakes' other
/// writes, so they cost no file, no rename and no flush of their own; larger ones, and every payload of the
/// command line, are spool files as in ``FilesystemPayloadStore``. Readable by every process of the machine that
/// opens the same ledger.
public struct SQLitePayloadStore: PayloadStore {
    public let ledger: SQLiteLedger
    public let inMemoryLimit: Int
    /// Where ``withLocalFile(_:_:)`` writes its temporary copies of payloads kept in the ledger.
    public let scratch: URL
    private let files = FilesystemPayloadStore()
    static let prefix = "sqlite:"
    /// The default ``inMemoryLimit``: 64 KiB, well above a typical form's submission.
    public static let defaultInMemoryLimit = 65_536
    /// The largest ``inMemoryLimit``: 256 KiB (one chunk of the PostgreSQL store as well).
    public static let maximumInMemoryLimit = 262_144

    public init(ledger: SQLiteLedger, scratch: URL, inMemoryLimit: Int = SQLitePayloadStore.defaultInMemoryLimit) {
        self.ledger = ledger
        self.scratch = scratch
        self.inMemoryLimit = min(max(0, inMemoryLimit), Self.maximumInMemoryLimit)
    }

    /// The submission id of a location in the ledger, nil for a spool file's path.
    private func keptInLedger(_ location: String) throws -> Int64? {
        guard location.hasPrefix(Self.prefix) else { return nil }
        guard let id = Int64(location.dropFirst(Self.prefix.count)) else {
            throw SpoolError("not a payload location: \(location)")
        }
        return id
    }

    public func keep(spooled file: URL, submission: Int64) async throws -> String {
        try await files.keep(spooled: file, submission: submission)
    }

    public func keep(bytes: [UInt8], submission: Int64) async throws -> String {
        try await ledger.keepPayload(bytes, submission: submission)
        return Self.prefix + String(submission)
    }

    private func bytes(of id: Int64) async throws -> [UInt8] {
        guard let bytes = try await ledger.payload(of: id) else {
            throw SpoolError("the payload of submission \(id) is not in the ledger")
        }
        return bytes
    }

    public func withLocalFile<T: Sendable>(_ location: String, _ body: (URL) async throws -> T) async throws -> T {
        guard let id = try keptInLedger(location) else { return try await files.withLocalFile(location, body) }
        let bytes = try await bytes(of: id)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        return try await Spool.withScratchFile(in: scratch, named: ".payload-\(id)-\(UUID().uuidString).xml", fill: { fd in
            try bytes.withUnsafeBytes { try Spool.writeAll(fd, $0) }
        }, body)
    }

    public func withPayload<T: Sendable>(_ location: String, _ body: (PayloadSource) async throws -> T) async throws -> T {
        guard let id = try keptInLedger(location) else { return try await files.withPayload(location, body) }
        return try await body(.bytes(try await bytes(of: id)))
    }

    public func remove(_ location: String) async throws {
        guard let id = try keptInLedger(location) else { return try await files.remove(location) }
        try await ledger.removePayload(of: id)
    }

    public func removeIncomplete(submission: Int64) async throws {
        try await ledger.removePayload(of: submission)
    }

    /// Deletes payloads of purged rows that a purge of an older version left (it did not know this table), then
    /// empties the ledger's write-ahead log, which may still hold purged payloads' pages.
    public func afterPurge() async throws {
        try await ledger.sweepPurgedPayloads()
    }
}
