import AmtsbotePipeline
@testable import AmtsboteService
import AmtsboteTestSupport
import Foundation
import Testing

@Suite("amtsbote serve: limits and timeouts (413 both ways, stalled headers and bodies)")
struct LimitTests {
    @Test("413 from Content-Length before any body byte is read: nothing recorded, the connection closed")
    func declaredTooLarge() async throws {
        let server = try await TestServer { $0.maxBodyBytes = 1 << 20 }
        let port = server.port
        let answer = try await onOwnThread {
            let connection = try RawConnection(port: port)
            connection.send("POST /v1/submissions HTTP/1.1\r\nHost: test\r\nContent-Type: application/xml\r\n"
                            + "Content-Length: 10737418240\r\n\r\n")
            return try connection.readToEnd()
        }
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
        #expect(answer.contains("service.too-large"))
        #expect(try await server.ledger.submissions(states: nil, limit: nil).isEmpty)
        try await server.stop()
    }

    @Test("a chunked body is cut as soon as it crosses the limit: 413, the rest not read, the submission kept as abandoned")
    func chunkedTooLarge() async throws {
        let limit = 1 << 20
        let server = try await TestServer { $0.maxBodyBytes = Int64(limit) }
        let port = server.port
        let (answer, sent) = try await onOwnThread { () -> (String, Int) in
            let connection = try RawConnection(port: port)
            connection.send("POST /v1/submissions HTTP/1.1\r\nHost: test\r\nContent-Type: application/xml\r\n"
                            + "Transfer-Encoding: chunked\r\n\r\n")
            let piece = Data(repeating: UInt8(ascii: "a"), count: 65536)
            let chunk = Data("10000\r\n".utf8) + piece + Data("\r\n".utf8)
            var sent = 0
            connection.send(Data("<a>".utf8).chunked())
            // Goes on for up to 2 GiB; a server that read it all would take minutes and answer only at the end.
            while sent < 2 << 30 && !connection.readable && connection.send(chunk) { sent += piece.count }
            return (try connection.readToEnd(), sent)
        }
        #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
        // The client's writes stop within what the two sockets' buffers hold beyond the limit.
        #expect(sent < 64 << 20, "sent \(sent) bytes before the cut")
        let rows = try await server.ledger.submissions(states: nil, limit: nil)
        #expect(rows.count == 1)
        #expect(rows.first?.state == .abandoned)
        #expect(rows.first?.reasonCode == "service.too-large")
        #expect(try FileManager.default.contentsOfDirectory(atPath: server.directory.appendingPathComponent("spool").path).isEmpty)
        try await server.stop()
    }

    @Test("headers that never end and a body that stalls: the connection is closed after the idle timeout; the stalled submission is kept as abandoned")
    func stalls() async throws {
        // Long enough that the request below reaches the server in one piece even on a loaded machine; the test
        // waits for the close, however long it takes.
        let server = try await TestServer { $0.idleTimeout = .seconds(2) }
        let port = server.port
        let headerAnswer = try await onOwnThread {
            let connection = try RawConnection(port: port)
            connection.send("POST /v1/submissions HTTP/1.1\r\nHost: test\r\n")
            return try connection.readToEnd()
        }
        #expect(headerAnswer.isEmpty)
        _ = try await onOwnThread {
            let connection = try RawConnection(port: port)
            connection.send("POST /v1/submissions HTTP/1.1\r\nHost: test\r\nContent-Type: application/xml\r\n"
                            + "Content-Length: 1000\r\n\r\n<a>")
            return try connection.readToEnd()
        }
        try await waitUntil("the stalled submission is recorded as abandoned") {
            try await server.ledger.submissions(states: [.abandoned], limit: nil).first?.reasonCode == "service.body-incomplete"
        }
        try await server.stop()
    }
}

