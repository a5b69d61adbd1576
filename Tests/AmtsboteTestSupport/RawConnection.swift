import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection to the test server, for what an HTTP client library hides: a body that goes on past a
/// limit, a header that never ends, a body that stalls. Blocking calls; run them with `onOwnThread`.
public final class RawConnection: @unchecked Sendable {
    public let fd: Int32

    /// Connects to 127.0.0.1:`port`.
    public init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    /// Sends everything; false once the server closed or reset the connection (never SIGPIPE).
    @discardableResult
    public func send(_ data: Data) -> Bool {
        data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let sent = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += sent
            }
            return true
        }
    }

    @discardableResult
    public func send(_ text: String) -> Bool { send(Data(text.utf8)) }

    /// Whether an answer (or the end of the connection) is waiting to be read.
    public var readable: Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) > 0
    }

    /// Reads until the server closes the connection (within the hang guard).
    public func readToEnd() throws -> String {
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        try waitUntilSync("the server closes the connection") {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) > 0 else { return false }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { out.append(contentsOf: buffer[0..<count]); return false }
            return true  // 0: closed; < 0: reset
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension Data {
    /// This data as one chunk of a chunked HTTP body.
    public func chunked() -> Data {
        Data(String(count, radix: 16).utf8) + Data("\r\n".utf8) + self + Data("\r\n".utf8)
    }
}
