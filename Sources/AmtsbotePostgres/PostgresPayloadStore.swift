import AmtsbotePipeline
import Foundation
import Logging
import Postfach
import PostgresNIO

/// Payloads in the ledger's database, as chunks of at most ``chunkSize`` bytes: written from the spool file
/// chunk by chunk in one transaction, read back chunk by chunk into a temporary file for a delivery. No process
/// needs a shared file system, and none holds a whole payload in memory. Small payloads (at most
/// ``inMemoryLimit`` bytes) go both ways in memory: the service's intake hands them over without a spool file
/// (one statement), and a delivery reads them without a temporary file.
public struct PostgresPayloadStore: PayloadStore {
    public let ledger: PostgresLedger
    /// Where deliveries read their temporary copies (process-local).
    public let scratch: URL
    public let inMemoryLimit: Int
    public static let chunkSize = 256 * 1024

    public init(ledger: PostgresLedger, scratch: URL, inMemoryLimit: Int = SQLitePayloadStore.defaultInMemoryLimit) throws {
        self.ledger = ledger
        self.scratch = scratch
        self.inMemoryLimit = min(max(0, inMemoryLimit), Self.chunkSize)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    static let prefix = "postgres:"

    public func keep(spooled file: URL, submission: Int64) async throws -> String {
        let fd = open(file.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SpoolError("cannot read \(file.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let logger = ledger.logger, ledger = ledger
        try await ledger.run {
            try await ledger.client.withTransaction(logger: logger) { connection in
                try await connection.query("DELETE FROM payload_chunk WHERE submission_id = \(submission)", logger: logger)
                var seq: Int32 = 0
                var buffer = ByteBufferAllocator().buffer(capacity: Self.chunkSize)
                while true {
                    buffer.clear()
                    let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.chunkSize) { bytes in
                        var total = 0
                        while total < Self.chunkSize {
                            let n = read(fd, bytes.baseAddress! + total, Self.chunkSize - total)
                            if n < 0 {
                                if errno == EINTR { continue }
                                throw SpoolError("cannot read the spool file: \(String(cString: strerror(errno)))")
                            }
                            if n == 0 { break }
                            total += n
                        }
                        return total
                    }
                    if count == 0 && seq > 0 { break }
                    try await connection.query("""
                        INSERT INTO payload_chunk (submission_id, seq, data) VALUES (\(submission), \(seq), \(buffer))
                        """, logger: logger)
                    seq += 1
                    if count < Self.chunkSize { break }
                }
            }
        }
        unlink(file.path)
        return Self.prefix + String(submission)
    }

    public func keep(bytes: [UInt8], submission: Int64) async throws -> String {
        guard bytes.count <= Self.chunkSize else { throw SpoolError("a payload in memory is at most one chunk") }
        let logger = ledger.logger, ledger = ledger
        let buffer = ByteBuffer(bytes: bytes)
        let statement = KeepSmallPayloadStatement(submission: submission, data: buffer)
        try await ledger.run {
            for try await _ in try await ledger.client.execute(statement, logger: logger) {}
        }
        return Self.prefix + String(submission)
    }

    /// A payload of one chunk within ``inMemoryLimit`` in memory; a larger one as a temporary file.
    public func withPayload<T: Sendable>(_ location: String, _ body: (PayloadSource) async throws -> T) async throws -> T {
        let id = try submissionID(location)
        let logger = ledger.logger, ledger = ledger, limit = Int32(inMemoryLimit)
        let statement = ReadSmallPayloadStatement(submission: id, limit: limit)
        let small = try await ledger.run { () -> [UInt8]? in
            var found: [UInt8]?
            for try await chunk in try await ledger.client.execute(statement, logger: logger) {
                found = Array(chunk.readableBytesView)
            }
            return found
        }
        if let small { return try await body(.bytes(small)) }
        return try await withLocalFile(location) { try await body(.file($0)) }
    }

    private func submissionID(_ location: String) throws -> Int64 {
        guard location.hasPrefix(Self.prefix), let id = Int64(location.dropFirst(Self.prefix.count)) else {
            throw SpoolError("not a PostgreSQL payload location: \(location)")
        }
        return id
    }

    public func withLocalFile<T: Sendable>(_ location: String, _ body: (URL) async throws -> T) async throws -> T {
        let id = try submissionID(location)
        let logger = ledger.logger, ledger = ledger
        return try await Spool.withScratchFile(in: scratch, named: "delivery-\(id)-\(UUID().uuidString).xml", fill: { fd in
            let chunks = try await ledger.run { () -> Int in
                var chunks = 0
                let rows = try await ledger.client.query(
                    "SELECT data FROM payload_chunk WHERE submission_id = \(id) ORDER BY seq", logger: logger)
                for try await chunk in rows.decode(ByteBuffer.self) {
                    chunks += 1
                    try chunk.withUnsafeReadableBytes { bytes in try Spool.writeAll(fd, bytes) }
                }
                return chunks
            }
            guard chunks > 0 else { throw SpoolError("the payload of submission \(id) is not in the ledger") }
        }, body)
    }

    public func remove(_ location: String) async throws {
        try await removeIncomplete(submission: try submissionID(location))
    }

    public func removeIncomplete(submission: Int64) async throws {
        let logger = ledger.logger, ledger = ledger
        _ = try await ledger.run {
            try await ledger.client.query("DELETE FROM payload_chunk WHERE submission_id = \(submission)", logger: logger)
        }
    }
}
