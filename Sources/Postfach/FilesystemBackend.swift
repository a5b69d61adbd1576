import Foundation

/// Delivers into one directory per Postfach under a root: `ROOT/<postfach>/<id>.xml` plus `<id>.json` metadata.
///
/// The payload and its metadata are streamed into `ROOT/.incoming/`, fsync'ed, then linked into place (atomic,
/// never replacing an existing file), metadata first, and the directory fsync'ed. The metadata link claims the id:
/// of two deliveries of one id with different payloads, racing or not, exactly one wins and the other gets
/// `conflict`. A Postfach directory therefore only ever holds complete files, and a visible payload always has
/// its metadata. A crash leaves at most temporary files in `.incoming`, named after the process that wrote them;
/// ``removeIncompleteFiles()`` clears those whose process is gone.
public struct FilesystemBackend: PostfachBackend {
    public let kind = "filesystem"
    /// The root holding one directory per Postfach.
    public let root: URL
    /// An append-only journal of every delivery call, one line each: time, Postfach, id, payload SHA-256 and what
    /// happened (`stored`, or `already-present` for a repeated call). Operators audit effects with it: an id is
    /// `stored` at most once, however often it was delivered.
    public let journal: URL?

    static let incoming = ".incoming"
    static let chunkSize = 256 * 1024
    /// Separates the writing process's identity from the rest of a temporary file's name.
    static let ownerSeparator: Character = "~"

    /// Uses (and creates) `root`; `journal`, when given, is appended to.
    public init(root: URL, journal: URL? = nil) throws {
        self.root = root
        self.journal = journal
        do {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(Self.incoming),
                                                    withIntermediateDirectories: true)
        } catch {
            throw PostfachError(code: .unavailable, message: "cannot create \(root.path): \(error.localizedDescription)")
        }
    }

    /// Removes temporary files that crashed processes left in `.incoming`. Files of processes that are still
    /// running (a delivery under way in another `amtsbote`) are left alone, so this is safe at any time.
    public func removeIncompleteFiles() {
        let incoming = root.appendingPathComponent(Self.incoming)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: incoming.path)) ?? [] where name.hasSuffix(".tmp") {
            if let owner = name.split(separator: Self.ownerSeparator, maxSplits: 1).first.flatMap(ProcessIdentity.init),
               owner.isAlive { continue }
            unlink(incoming.appendingPathComponent(name).path)
        }
    }

    public func deliver(_ delivery: Delivery, context: DeliveryContext) async throws -> Receipt {
        try checkNames(delivery)
        let directory = root.appendingPathComponent(delivery.postfach, isDirectory: true)
        let final = directory.appendingPathComponent(delivery.id + ".xml")
        let metadata = directory.appendingPathComponent(delivery.id + ".json")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw PostfachError(code: .unavailable, message: "cannot create the Postfach directory: \(error.localizedDescription)")
        }
        if let receipt = try existingReceipt(delivery, final: final, metadata: metadata) {
            record(delivery, "already-present")
            return receipt
        }

        let token = "\(ProcessIdentity.current)\(Self.ownerSeparator)\(delivery.postfach).\(delivery.id).\(UUID().uuidString)"
        let incoming = root.appendingPathComponent(Self.incoming)
        let temporaryPayload = incoming.appendingPathComponent("\(token).tmp")
        let temporaryMetadata = incoming.appendingPathComponent("\(token).json.tmp")
        defer {
            unlink(temporaryPayload.path)
            unlink(temporaryMetadata.path)
        }
        try await Self.copy(delivery.payload, to: temporaryPayload, expectedSize: delivery.payloadSize)
        try await Self.writeDurably(try metadataJSON(delivery), to: temporaryMetadata)
        // The last point where a cancellation is honoured: from here the delivery completes or fails as a whole.
        if Task.isCancelled { throw PostfachError(code: .cancelled, message: "cancelled before the delivery became visible") }
        // Metadata first, so a visible payload always has its metadata; linked, never replaced, so it claims the id.
        if link(temporaryMetadata.path, metadata.path) != 0 {
            guard errno == EEXIST else { throw Self.failure("cannot move the metadata into the Postfach") }
            // Claimed before: by this payload (an earlier attempt, or a concurrent resend) or by another one.
            guard try storedHash(metadata: metadata, final: final) == delivery.payloadSHA256 else {
                throw PostfachError(code: .conflict, message: "the Postfach holds a different payload under the id \(delivery.id)")
            }
        }
        if link(temporaryPayload.path, final.path) != 0 {
            if errno == EEXIST, let receipt = try existingReceipt(delivery, final: final, metadata: metadata) {
                record(delivery, "already-present")
                return receipt   // a concurrent delivery of the same payload won
            }
            try Self.posix(-1, "cannot link the payload into the Postfach")
        }
        try await Self.syncDirectory(directory)
        record(delivery, "stored")
        return Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind, location: final.path,
                       deliveredAt: Date(), payloadSHA256: delivery.payloadSHA256, alreadyPresent: false)
    }

    /// Appends one line to the journal (one `write` with `O_APPEND`, so lines of concurrent processes never mix).
    private func record(_ delivery: Delivery, _ outcome: String) {
        guard let journal else { return }
        let line = "\(InternetDateTime.string(from: Date())) \(delivery.postfach) \(delivery.id) "
            + "\(delivery.payloadSHA256) \(outcome)\n"
        let fd = open(journal.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = Array(line.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// The payload hash recorded in a Postfach's metadata file.
    private func storedHash(metadata: URL, final: URL) throws -> String {
        let stored = (try? Data(contentsOf: metadata))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        guard let sha = stored?["payloadSHA256"] as? String else {
            throw PostfachError(code: .conflict, message: "the Postfach holds \(final.lastPathComponent) without readable metadata")
        }
        return sha
    }

    private func existingReceipt(_ delivery: Delivery, final: URL, metadata: URL) throws -> Receipt? {
        guard FileManager.default.fileExists(atPath: final.path) else { return nil }
        let sha = try storedHash(metadata: metadata, final: final)
        guard sha == delivery.payloadSHA256 else {
            throw PostfachError(code: .conflict, message: "the Postfach holds a different payload under the id \(delivery.id)")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: final.path)
        return Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind, location: final.path,
                       deliveredAt: (attributes?[.modificationDate] as? Date) ?? Date(), payloadSHA256: sha,
                       alreadyPresent: true)
    }

    private func metadataJSON(_ delivery: Delivery) throws -> Data {
        var object = delivery.metadata.fields.mapValues(MetadataValue.text)
        object["id"] = .text(delivery.id)
        object["postfach"] = .text(delivery.postfach)
        object["payloadSHA256"] = .text(delivery.payloadSHA256)
        object["payloadSize"] = .number(delivery.payloadSize)
        object["receivedAt"] = .text(InternetDateTime.string(from: delivery.receivedAt))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try encoder.encode(object)
    }

    /// A value of the metadata file: text, or the payload's size.
    private enum MetadataValue: Encodable {
        case text(String)
        case number(Int64)

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .text(let text): try container.encode(text)
            case .number(let number): try container.encode(number)
            }
        }
    }

    /// Writes the payload to `target` (created, flushed); `expectedSize` bytes or a `rejected` error.
    static func copy(_ source: PayloadSource, to target: URL, expectedSize: Int64) async throws {
        switch source {
        case .file(let file):
            try await copy(file, to: target, expectedSize: expectedSize)
        case .bytes(let bytes):
            guard bytes.count == expectedSize else {
                throw PostfachError.wrongSize(Int64(bytes.count), expected: expectedSize)
            }
            try await writeDurably(Data(bytes), to: target, what: "the payload")
        }
    }

    /// Streams `source` to `target` in chunks, checking for cancellation, then fsyncs.
    static func copy(_ source: URL, to target: URL, expectedSize: Int64) async throws {
        let input = open(source.path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw PostfachError(code: .rejected, message: "the payload file cannot be read") }
        defer { close(input) }
        let output = open(target.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard output >= 0 else { try posix(-1, "cannot create a temporary file") ; return }
        defer { close(output) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buffer.deallocate() }
        var total: Int64 = 0
        while true {
            if Task.isCancelled { throw PostfachError(code: .cancelled, message: "cancelled before the payload was complete") }
            let count = read(input, buffer.baseAddress, buffer.count)
            if count < 0 { if errno == EINTR { continue }; try posix(-1, "cannot read the payload") }
            if count == 0 { break }
            var offset = 0
            while offset < count {
                let written = write(output, buffer.baseAddress! + offset, count - offset)
                if written < 0 { if errno == EINTR { continue }; try posix(-1, "cannot write the payload") }
                offset += written
            }
            total += Int64(count)
            await Task.yield()
        }
        guard total == expectedSize else {
            throw PostfachError.wrongSize(total, expected: expectedSize)
        }
        try await flush(output, "cannot flush the payload to disk")
    }

    static func writeDurably(_ data: Data, to url: URL, what: String = "metadata") async throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { try posix(-1, "cannot create a temporary file"); return }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 { if errno == EINTR { continue }; try posix(-1, "cannot write \(what)") }
                offset += written
            }
        }
        try await flush(fd, "cannot flush \(what) to disk")
    }

    static func syncDirectory(_ directory: URL) async throws {
        let fd = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { try posix(-1, "cannot open the Postfach directory"); return }
        defer { close(fd) }
        try await flush(fd, "cannot flush the Postfach directory")
    }

    /// `fsync(fd)` on a thread outside the task pool: a flush takes milliseconds, and blocking one of the few
    /// threads that run every task of the process (two on a 2-core machine) would stall the rest of it meanwhile
    /// (in `amtsbote serve`, the intake beside the workers). `fd` stays open until this returns.
    static func flush(_ fd: Int32, _ what: String) async throws {
        let (status, error) = await withCheckedContinuation { (continuation: CheckedContinuation<(Int32, Int32), Never>) in
            DispatchQueue.global(qos: .utility).async {
                let status = fsync(fd)
                continuation.resume(returning: (status, status == 0 ? 0 : errno))
            }
        }
        guard status == 0 else {
            throw PostfachError(code: .unavailable, message: "\(what): \(String(cString: strerror(error)))")
        }
    }

    /// Turns a failed system call into a PostfachError; full disks, permissions and I/O errors are retryable.
    static func posix(_ status: Int32, _ what: String) throws {
        guard status != 0 else { return }
        throw failure(what)
    }

    /// The failure of the system call that just set `errno`.
    static func failure(_ what: String) -> PostfachError {
        PostfachError(code: .unavailable, message: "\(what): \(String(cString: strerror(errno)))")
    }
}
