import Foundation

/// Delivers into one directory per Postfach under a root: `ROOT/<postfach>/<id>.xml` plus `<id>.json` metadata.
///
/// The payload is streamed into `ROOT/.incoming/`, fsync'ed, then linked into place (atomic, never replacing an
/// existing file) and the directory fsync'ed. A Postfach directory therefore only ever holds complete files; a
/// crash leaves at most a temporary file in `.incoming`, which ``removeIncompleteFiles()`` clears.
public struct FilesystemBackend: PostfachBackend {
    public let kind = "filesystem"
    /// The root holding one directory per Postfach.
    public let root: URL

    static let incoming = ".incoming"
    static let chunkSize = 256 * 1024

    /// Uses (and creates) `root`.
    public init(root: URL) throws {
        self.root = root
        do {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(Self.incoming),
                                                    withIntermediateDirectories: true)
        } catch {
            throw PostfachError(code: .unavailable, message: "cannot create \(root.path): \(error.localizedDescription)")
        }
    }

    /// Removes temporary files a crashed process left in `.incoming`. Call when no delivery is running.
    public func removeIncompleteFiles() {
        let incoming = root.appendingPathComponent(Self.incoming)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: incoming.path)) ?? [] where name.hasSuffix(".tmp") {
            unlink(incoming.appendingPathComponent(name).path)
        }
    }

    public func deliver(_ delivery: Delivery) async throws -> Receipt {
        try checkNames(delivery)
        let directory = root.appendingPathComponent(delivery.postfach, isDirectory: true)
        let final = directory.appendingPathComponent(delivery.id + ".xml")
        let metadata = directory.appendingPathComponent(delivery.id + ".json")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw PostfachError(code: .unavailable, message: "cannot create the Postfach directory: \(error.localizedDescription)")
        }
        if let receipt = try existingReceipt(delivery, final: final, metadata: metadata) { return receipt }

        let token = UUID().uuidString
        let incoming = root.appendingPathComponent(Self.incoming)
        let temporaryPayload = incoming.appendingPathComponent("\(delivery.postfach).\(delivery.id).\(token).tmp")
        let temporaryMetadata = incoming.appendingPathComponent("\(delivery.postfach).\(delivery.id).\(token).json.tmp")
        defer {
            unlink(temporaryPayload.path)
            unlink(temporaryMetadata.path)
        }
        try await Self.copy(delivery.payload, to: temporaryPayload, expectedSize: delivery.payloadSize)
        try Self.writeDurably(try metadataJSON(delivery), to: temporaryMetadata)
        // Metadata first, so a visible payload always has its metadata.
        try Self.posix(rename(temporaryMetadata.path, metadata.path), "cannot move the metadata into the Postfach")
        try Task.checkCancellation()
        if link(temporaryPayload.path, final.path) != 0 {
            if errno == EEXIST, let receipt = try existingReceipt(delivery, final: final, metadata: metadata) {
                return receipt   // a concurrent delivery of the same id won
            }
            try Self.posix(-1, "cannot link the payload into the Postfach")
        }
        try Self.syncDirectory(directory)
        return Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind, location: final.path,
                       deliveredAt: Date(), payloadSHA256: delivery.payloadSHA256, alreadyPresent: false)
    }

    private func existingReceipt(_ delivery: Delivery, final: URL, metadata: URL) throws -> Receipt? {
        guard FileManager.default.fileExists(atPath: final.path) else { return nil }
        let stored = (try? Data(contentsOf: metadata))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
        guard let sha = stored?["payloadSHA256"] as? String else {
            throw PostfachError(code: .conflict, message: "the Postfach holds \(final.lastPathComponent) without readable metadata")
        }
        guard sha == delivery.payloadSHA256 else {
            throw PostfachError(code: .conflict, message: "the Postfach holds a different payload under the id \(delivery.id)")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: final.path)
        return Receipt(deliveryID: delivery.id, postfach: delivery.postfach, backend: kind, location: final.path,
                       deliveredAt: (attributes?[.modificationDate] as? Date) ?? Date(), payloadSHA256: sha,
                       alreadyPresent: true)
    }

    private func metadataJSON(_ delivery: Delivery) throws -> Data {
        var object: [String: Any] = delivery.metadata
        object["id"] = delivery.id
        object["postfach"] = delivery.postfach
        object["payloadSHA256"] = delivery.payloadSHA256
        object["payloadSize"] = delivery.payloadSize
        object["receivedAt"] = ISO8601DateFormatter().string(from: delivery.receivedAt)
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
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
            throw PostfachError(code: .rejected, message: "the payload has \(total) bytes, \(expectedSize) expected")
        }
        try posix(fsync(output), "cannot flush the payload to disk")
    }

    static func writeDurably(_ data: Data, to url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o640)
        guard fd >= 0 else { try posix(-1, "cannot create a temporary file"); return }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 { if errno == EINTR { continue }; try posix(-1, "cannot write metadata") }
                offset += written
            }
        }
        try posix(fsync(fd), "cannot flush metadata to disk")
    }

    static func syncDirectory(_ directory: URL) throws {
        let fd = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { try posix(-1, "cannot open the Postfach directory"); return }
        defer { close(fd) }
        try posix(fsync(fd), "cannot flush the Postfach directory")
    }

    /// Turns a failed system call into a PostfachError; full disks, permissions and I/O errors are retryable.
    static func posix(_ status: Int32, _ what: String) throws {
        guard status != 0 else { return }
        let code = errno
        let reason = String(cString: strerror(code))
        throw PostfachError(code: .unavailable, message: "\(what): \(reason)")
    }
}
