import Crypto
import Foundation
import Postfach
import XoevValidation

/// What reading one submission produced: the payload (on disk, or in memory when it was small enough and the
/// intake allowed it), its hash, and the validation report.
public struct Intake: Sendable {
    public let report: ValidationReport
    /// The spool file (flushed and in place), or the bytes of a small payload that never needed one.
    public let payload: PayloadSource
    public let sha256: String
    public let size: Int64
    /// The input was longer than the size limit; only the first `size` bytes are kept.
    public let truncated: Bool
}

/// Keeps every payload on disk, unchanged, from the moment it arrives: one pass reads the input, writes the spool
/// file, hashes it and feeds the validator. Nothing is held whole in memory.
public struct Spool: Sendable {
    public let directory: URL
    /// `directory` as a path, worked out once (URL path operations cost more than the rest of a small intake's
    /// bookkeeping).
    let directoryPath: String

    public init(directory: URL) throws {
        self.directory = directory
        directoryPath = directory.path
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    /// Reads `fd` to its end (or to the validator's size limit) into `<submission>.xml`, validating on the way.
    /// The file is fsync'ed and renamed into place before this returns.
    public func take(fileDescriptor fd: Int32, named name: String, submission: Int64,
                     validator: Validator) throws -> Intake {
        let writer = try SpoolWriter(spool: self, named: name, submission: submission, validator: validator)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Validator.readChunkSize, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                writer.cancel()
                throw XoevValidation.ValidationError(code: .inputUnreadable, file: name,
                                                     message: "read failed: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            if try !writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) { break }
        }
        return try writer.finish()
    }

    /// Starts keeping one payload that arrives in pieces (an HTTP body): see ``SpoolWriter``. A payload of at most
    /// `inMemoryLimit` bytes stays in memory and no spool file is created for it.
    public func begin(named name: String, submission: Int64, validator: Validator,
                      inMemoryLimit: Int = 0) throws -> SpoolWriter {
        try SpoolWriter(spool: self, named: name, submission: submission, validator: validator,
                        inMemoryLimit: inMemoryLimit)
    }

    /// Removes what an intake that was not accepted left in the spool: its temporary file, and the file moved into
    /// place when the intake got that far (the row then never recorded it: verdict, route and queueing are written
    /// at once, after the payload is kept).
    public func removeIncompleteFile(of submission: Int64) {
        unlink(directoryPath + "/.\(submission).xml.tmp")
        unlink(directoryPath + "/\(submission).xml")
    }

    /// Removes temporary files of intakes that no running process reads any more: every `.N.xml.tmp` with
    /// N ≤ `newest` whose submission N is not in `reading`.
    public func removeIncompleteFiles(upTo newest: Int64, except reading: Set<Int64>) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] where name.hasSuffix(".xml.tmp") {
            let number = name.dropFirst().dropLast(".xml.tmp".count)
            if let id = Int64(number), id > newest || reading.contains(id) { continue }
            unlink(directory.appendingPathComponent(name).path)
        }
    }

    /// Runs `fill` with a new file `name` in `folder` (open for writing, readable by this user only), then `body`
    /// with that file, which is removed afterwards: a payload store's temporary copy for a delivery.
    public static func withScratchFile<T: Sendable>(in folder: URL, named name: String,
                                                    fill: (Int32) async throws -> Void,
                                                    _ body: (URL) async throws -> T) async throws -> T {
        let file = folder.appendingPathComponent(name)
        let fd = open(file.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError("cannot create \(file.path): \(String(cString: strerror(errno)))") }
        defer { unlink(file.path) }
        do {
            defer { close(fd) }
            try await fill(fd)
        }
        return try await body(file)
    }

    /// Writes all of `bytes` to `fd` (again after short writes and interruptions).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw SpoolError("cannot write the spool file: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }
}

/// One payload being kept: each piece is written to `.<submission>.xml.tmp`, hashed and fed to the validator in
/// one pass; ``finish()`` flushes the file and moves it into place as `<submission>.xml`. Nothing is held beyond
/// the piece being written, except that a writer with an in-memory limit keeps the first pieces in memory and
/// creates the file only once the payload grows past that limit: a small payload never touches the disk here (its
/// store keeps it durably). Not thread-safe: one task writes at a time.
public final class SpoolWriter: @unchecked Sendable {
    private let final: String
    private let temporary: String
    private let directory: String
    /// The spool file, once there is one; -1 before (in memory) and after (finished or given up).
    private var output: Int32 = -1
    private var ended = false
    /// The payload so far, while it stays within `inMemoryLimit`.
    private var memory: [UInt8]?
    private let inMemoryLimit: Int
    private let document: DocumentValidation
    private var decided = false
    private var hasher = SHA256()
    /// Bytes kept so far.
    public private(set) var size: Int64 = 0
    /// The input went on past the validator's size limit; only the first `size` bytes are kept.
    public private(set) var truncated = false
    private let cap: Int64

    init(spool: Spool, named name: String, submission: Int64, validator: Validator, inMemoryLimit: Int = 0) throws {
        directory = spool.directoryPath
        final = directory + "/\(submission).xml"
        temporary = directory + "/.\(submission).xml.tmp"
        self.inMemoryLimit = max(0, inMemoryLimit)
        document = validator.startDocument(named: name)
        cap = validator.limits.maxBytes
        if self.inMemoryLimit > 0 {
            memory = []
            memory?.reserveCapacity(min(self.inMemoryLimit, 16_384))
        } else {
            try openFile()
        }
    }

    deinit { cancel() }

    private func openFile() throws {
        output = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard output >= 0 else {
            throw SpoolError("cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
    }

    /// Keeps one piece. `false` once the input crossed the size limit: the rest is not wanted (the validator then
    /// reports `input.too-large`; the spool keeps the first bytes up to the limit).
    @discardableResult
    public func write(_ piece: UnsafeRawBufferPointer) throws -> Bool {
        guard !truncated else { return false }
        guard !ended else { throw SpoolError("the spool file was already given up") }
        var count = piece.count
        if cap > 0 && size + Int64(count) > cap {
            count = Int(cap - size)
            truncated = true
        }
        let chunk = UnsafeRawBufferPointer(rebasing: piece[0..<count])
        if memory != nil, Int(size) + count > inMemoryLimit {
            // Past the limit: from here on a file, starting with what memory held.
            let held = memory ?? []
            memory = nil
            try openFile()
            try held.withUnsafeBytes { try Spool.writeAll(output, $0) }
        }
        if memory != nil {
            memory?.append(contentsOf: chunk)
        } else {
            try Spool.writeAll(output, chunk)
        }
        hasher.update(bufferPointer: chunk)
        size += Int64(count)
        if !decided { decided = document.feed(chunk) }
        if truncated {
            // One more byte past the limit makes the validator report input.too-large.
            if !decided { _ = document.feed(UnsafeRawBufferPointer(rebasing: piece[count..<count + 1])) }
            return false
        }
        return true
    }

    /// Flushes the payload to disk and moves it into place (or hands over the bytes held in memory) and returns the
    /// verdict.
    public func finish() throws -> Intake {
        guard !ended else { throw SpoolError("the spool file was already given up") }
        let digest = Hex.lowercase(hasher.finalize())
        if let memory {
            ended = true
            self.memory = nil
            return Intake(report: document.finish(), payload: .bytes(memory), sha256: digest, size: size,
                          truncated: truncated)
        }
        guard fsync(output) == 0 else {
            let reason = String(cString: strerror(errno))
            cancel()
            throw SpoolError("cannot flush the spool file: \(reason)")
        }
        ended = true
        close(output)
        output = -1
        guard rename(temporary, final) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            _ = document.finish()
            throw SpoolError("cannot move the spool file into place: \(reason)")
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
        return Intake(report: document.finish(), payload: .file(URL(fileURLWithPath: final)), sha256: digest, size: size,
                      truncated: truncated)
    }

    /// Gives the payload up: the temporary file is removed (nothing was moved into place), the bytes held dropped.
    public func cancel() {
        guard !ended else { return }
        ended = true
        memory = nil
        if output >= 0 {
            close(output)
            output = -1
            unlink(temporary)
        }
        _ = document.finish()
    }
}

/// The spool could not keep a payload (disk full, permissions): the submission is not accepted.
public struct SpoolError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
