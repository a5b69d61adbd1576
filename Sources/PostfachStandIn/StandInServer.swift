import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// The local stand-in for network Postfächer (`amtsbote-testserver`): an HTTP Postfach receiver that stores each
/// delivery once per id, lists what it received, and injects faults on request; and the part of FIT-Connect's
/// Submission API a sender needs. Docs/backends.md.
public struct StandInServer: Sendable {
    /// What arrived so far over the plain HTTP receiver.
    public let received: ReceivedDeliveries
    let receiver: HTTPReceiver
    let fitConnect: FITConnectStandIn?
    let host: String
    let port: Int

    /// - Parameters:
    ///   - keepPayloads: keep the received bytes in memory (tests compare them); otherwise only their hashes.
    ///   - seed: the seed of the fault draws (repeatable runs).
    ///   - fitConnect: serve the FIT-Connect subset too (its keys are made now: a 4096-bit RSA key takes a moment).
    public init(host: String = "127.0.0.1", port: Int = 9090, faults: StandInFaults = StandInFaults(),
                keepPayloads: Bool = false, seed: UInt64 = 1, fitConnect: FITConnectOptions? = nil) throws {
        received = ReceivedDeliveries(keepPayloads: keepPayloads)
        receiver = HTTPReceiver(received: received, faults: faults, dice: Dice(seed: seed))
        self.fitConnect = try fitConnect.map {
            FITConnectStandIn(options: $0, keys: try FITConnectKeys(bits: $0.keyBits), faults: faults, dice: Dice(seed: seed &+ 1))
        }
        self.host = host
        self.port = port
    }

    /// The FIT-Connect submissions so far, in the order created.
    public var fitConnectSubmissions: [FITConnectSubmission] {
        get async { await fitConnect?.state.all ?? [] }
    }

    /// PEM of the authority that issued the destinations' encryption key certificate (to configure as trust root).
    public var fitConnectAuthorityPEM: String? { fitConnect?.keys.authorityPEM }

    /// The listener as a service; `onListening` learns the bound address (port 0 picks a free one).
    public func service(logger: Logger = Logger(label: "amtsbote.testserver"),
                        onListening: @escaping @Sendable (SocketAddress?) async -> Void = { _ in }) -> some Service {
        let router = Router(context: StandInContext.self)
        receiver.register(on: router)
        fitConnect?.register(on: router)
        router.get("/healthz") { _, _ in "alive\n" }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: nil),
                           onServerRunning: { await onListening($0.localAddress) }, logger: logger)
    }
}
