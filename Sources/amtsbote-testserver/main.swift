import ArgumentParser
import Foundation
import Logging
import PostfachStandIn
import ServiceLifecycle

/// `amtsbote-testserver`: a local stand-in for network Postfächer, to try the http backend without credentials
/// and to test it under faults (Docs/backends.md).
@main
struct TestServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amtsbote-testserver",
        abstract: "A local stand-in for network Postfächer: an HTTP receiver that stores each delivery once per id.",
        discussion: """
            PUT or POST /postfach/{postfach}/{id}: stored once per id (201); the same bytes again 200, other bytes 409 \
            with the held Content-Digest; a Content-Digest that does not match the body 400. GET /_received lists \
            what arrived as JSON: per id the SHA-256, the requests that named it and the faults injected into them. The fault options inject failures into a share (0 to 1) of delivery requests. \
            For trying and testing only: it keeps everything in memory.
            """)

    @Option(help: "Listen address HOST:PORT.")
    var listen = "127.0.0.1:9090"

    @Option(help: "Share of requests answered 429 with Retry-After, before storing.")
    var rateLimited = 0.0
    @Option(help: "Share of requests answered 503, before storing.")
    var unavailable = 0.0
    @Option(help: "Share of requests stored, then answered only after --slow-seconds.")
    var slow = 0.0
    @Option(help: "Seconds a slow answer takes.")
    var slowSeconds = 5.0
    @Option(help: "Share of requests stored, then the connection closed without an answer.")
    var reset = 0.0
    @Option(help: "Share of requests answered with a redirect (307), before storing.")
    var redirect = 0.0
    @Option(help: "Retry-After of a 429, in seconds.")
    var retryAfter = 1
    @Option(help: "Seed of the fault draws.")
    var seed: UInt64 = 1

    @Flag(help: "Serve the FIT-Connect Submission API subset too (token, destinations, keys, submissions, events).")
    var fitConnect = false
    @Option(help: "FIT-Connect: the client id the token endpoint accepts.")
    var fitClientId = "amtsbote-test"
    @Option(help: "FIT-Connect: the environment variable holding the client secret the token endpoint accepts.")
    var fitClientSecretEnv = "AMTSBOTE_FIT_CONNECT_SECRET"
    @Option(help: "FIT-Connect: a submission schema URI (application/xml) every destination accepts; repeatable.")
    var fitSchema: [String] = []
    @Flag(help: "FIT-Connect: keep the receivers' accept and reject events back until POST /_fit-connect/verdicts releases them (?forge=1: signed with a wrong key; ?tamper=1: other authentication tags).")
    var fitHoldVerdicts = false

    func validate() throws {
        for (name, share) in [("rate-limited", rateLimited), ("unavailable", unavailable), ("slow", slow),
                              ("reset", reset), ("redirect", redirect)] where !(0...1).contains(share) {
            throw ValidationError("--\(name) must be between 0 and 1")
        }
        guard listen.contains(":"), Int(listen.split(separator: ":").last ?? "") != nil else {
            throw ValidationError("--listen must be HOST:PORT")
        }
    }

    func run() async throws {
        let colon = listen.lastIndex(of: ":")!
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let port = Int(listen[listen.index(after: colon)...])!
        let faults = StandInFaults(rateLimited: rateLimited, unavailable: unavailable, slow: slow, reset: reset,
                                   redirect: redirect, retryAfterSeconds: retryAfter,
                                   slowFor: .milliseconds(Int64(slowSeconds * 1000)))
        let fitConnect = self.fitConnect ? FITConnectOptions(
            clientID: fitClientId, clientSecret: ProcessInfo.processInfo.environment[fitClientSecretEnv] ?? "stand-in-secret",
            schemaURIs: fitSchema, holdVerdicts: fitHoldVerdicts) : nil
        let server = try StandInServer(host: host, port: port, faults: faults, seed: seed, fitConnect: fitConnect)
        let logger = Logger(label: "amtsbote.testserver")
        let service = server.service(logger: logger) { address in
            // Unbuffered, so a caller reading the pipe learns the port at once.
            let line = "testserver: listening on \(address.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?")\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        let group = ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        try await group.run()
    }
}
