import Crypto
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import Postfach

/// Faults the stand-in injects into delivery requests, each a share of requests (0…1), drawn independently.
public struct StandInFaults: Sendable {
    /// Answered 429 with `Retry-After` before anything is stored.
    public var rateLimited: Double = 0
    /// Answered 503 before anything is stored.
    public var unavailable: Double = 0
    /// Stored, then answered only after ``slowFor`` (a sender with a shorter deadline gives up and tries again).
    public var slow: Double = 0
    /// Stored, then the connection is closed without an answer.
    public var reset: Double = 0
    /// Answered 307 to another path, before anything is stored (a sender must not follow it).
    public var redirect: Double = 0
    /// The `Retry-After` of a 429, in seconds.
    public var retryAfterSeconds: Int = 1
    /// How long a slow answer takes.
    public var slowFor: Duration = .seconds(5)

    public init(rateLimited: Double = 0, unavailable: Double = 0, slow: Double = 0, reset: Double = 0,
                redirect: Double = 0, retryAfterSeconds: Int = 1, slowFor: Duration = .seconds(5)) {
        self.rateLimited = rateLimited
        self.unavailable = unavailable
        self.slow = slow
        self.reset = reset
        self.redirect = redirect
        self.retryAfterSeconds = retryAfterSeconds
        self.slowFor = slowFor
    }
}

/// What the stand-in received: one entry per delivery id (stored with the first request that carried it whole),
/// with the requests that named it and the faults injected into them, so a test can tell a sender's retry after a
/// fault from a request sent twice for no reason.
public actor ReceivedDeliveries {
    /// One delivery as the receiver holds it.
    public struct Entry: Sendable, Hashable {
        public var postfach: String
        public var id: String
        /// SHA-256 of the stored bytes, lower-case hex.
        public var sha256: String
        public var size: Int
        /// Requests that reached the store with this id (the first included).
        public var requests: Int
        /// Faults injected into requests for this id (429, 503, redirect before storing; a dropped or slow answer
        /// after): each may explain one more request.
        public var faults: Int
        /// The sender sent a `Content-Digest` (a wrong one is refused with 400 before anything is stored).
        public var digestSent: Bool
        /// The metadata header as sent (`Amtsbote-Metadata`), if any.
        public var metadata: String?
    }

    private var entries: [String: Entry] = [:]
    private var faults: [String: Int] = [:]
    private var payloads: [String: Data] = [:]
    private var order: [String] = []
    let keepPayloads: Bool

    init(keepPayloads: Bool) { self.keepPayloads = keepPayloads }

    enum Outcome { case stored, same, other(sha256: String) }

    func receive(postfach: String, id: String, body: Data, sha256: String, digestMatched: Bool, metadata: String?) -> Outcome {
        let key = postfach + "/" + id
        if var entry = entries[key] {
            entry.requests += 1
            entries[key] = entry
            return entry.sha256 == sha256 ? .same : .other(sha256: entry.sha256)
        }
        entries[key] = Entry(postfach: postfach, id: id, sha256: sha256, size: body.count, requests: 1, faults: 0,
                             digestSent: digestMatched, metadata: metadata)
        if keepPayloads { payloads[key] = body }
        order.append(key)
        return .stored
    }

    func noteFault(postfach: String, id: String) { faults[postfach + "/" + id, default: 0] += 1 }

    /// Every delivery, in the order first stored.
    public var all: [Entry] {
        order.compactMap { key in entries[key].map { var entry = $0; entry.faults = faults[key] ?? 0; return entry } }
    }

    /// The bytes stored for an id in a Postfach (kept when the stand-in keeps payloads).
    public func payload(postfach: String, id: String) -> Data? { payloads[postfach + "/" + id] }
}

/// The request context of the stand-in: the connection, to drop it without an answer.
public struct StandInContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// A well-behaved HTTP Postfach receiver: `PUT` or `POST /postfach/{postfach}/{id}` stores the body once per id
/// (201), answers a repeat with the same bytes 200 and one with other bytes 409 (with the held `Content-Digest`);
/// a `Content-Digest` that does not match the body, or an `Idempotency-Key` other than the id, is 400.
/// `GET /_received` lists what arrived. Faults are injected as configured.
struct HTTPReceiver: Sendable {
    let received: ReceivedDeliveries
    let faults: StandInFaults
    let dice: Dice

    func register(on router: Router<StandInContext>) {
        for method in [HTTPRequest.Method.put, .post] {
            router.on("/postfach/:postfach/:id", method: method) { request, context in
                try await receive(request, context: context)
            }
        }
        router.get("/_received") { _, _ in
            let entries = await received.all.map { entry -> [String: Any] in
                var object: [String: Any] = ["postfach": entry.postfach, "id": entry.id, "sha256": entry.sha256,
                                             "size": entry.size, "requests": entry.requests, "faults": entry.faults,
                                             "digestSent": entry.digestSent]
                if let metadata = entry.metadata { object["metadata"] = metadata }
                return object
            }
            let data = try JSONSerialization.data(withJSONObject: entries, options: [.sortedKeys])
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
    }

    func receive(_ request: Request, context: StandInContext) async throws -> Response {
        guard let postfach = context.parameters.get("postfach"), let id = context.parameters.get("id") else {
            return problem(.badRequest, "no Postfach or id in the path")
        }
        if await dice.roll(faults.redirect) {
            await received.noteFault(postfach: postfach, id: id)
            return Response(status: .temporaryRedirect, headers: [.location: "/elsewhere/\(postfach)/\(id)"])
        }
        if await dice.roll(faults.rateLimited) {
            await received.noteFault(postfach: postfach, id: id)
            return Response(status: .tooManyRequests, headers: [.retryAfter: "\(faults.retryAfterSeconds)"])
        }
        if await dice.roll(faults.unavailable) {
            await received.noteFault(postfach: postfach, id: id)
            return problem(.serviceUnavailable, "injected outage")
        }
        let body = try await request.body.collect(upTo: 256 << 20)
        let bytes = Data(body.readableBytesView)
        let sha = SHA256.hash(data: bytes)
        let digest = ContentDigest.sha256(bytes: sha)
        let hex = sha.map { String(format: "%02x", $0) }.joined()
        if let key = request.headers[HTTPField.Name("Idempotency-Key")!], key != id {
            return problem(.badRequest, "Idempotency-Key is not the id of the path")
        }
        let sent = request.headers[HTTPField.Name("Content-Digest")!]
        if let sent, ContentDigest.sha256Member(of: sent) != ContentDigest.sha256Member(of: digest) {
            return problem(.badRequest, "Content-Digest does not match the body")
        }
        let outcome = await received.receive(postfach: postfach, id: id, body: bytes, sha256: hex, digestMatched: sent != nil,
                                             metadata: request.headers[HTTPField.Name("Amtsbote-Metadata")!])
        if await dice.roll(faults.reset) {
            // Stored, but the sender never hears of it: its retry must find it present, not store it twice.
            await received.noteFault(postfach: postfach, id: id)
            context.channel.close(mode: .all, promise: nil)
            return Response(status: .internalServerError)
        }
        if await dice.roll(faults.slow) {
            await received.noteFault(postfach: postfach, id: id)
            try? await Task.sleep(for: faults.slowFor)
        }
        let location = "/postfach/\(postfach)/\(id)"
        switch outcome {
        case .stored:
            return Response(status: .created, headers: [.location: location, HTTPField.Name("Content-Digest")!: digest])
        case .same:
            return Response(status: .ok, headers: [.location: location, HTTPField.Name("Content-Digest")!: digest])
        case .other(let held):
            var response = problem(.conflict, "another payload is held under this id")
            response.headers[HTTPField.Name("Content-Digest")!] = ContentDigest.sha256(hex: held)
            return response
        }
    }

    func problem(_ status: HTTPResponse.Status, _ detail: String) -> Response {
        let object: [String: Any] = ["type": "about:blank", "title": status.reasonPhrase, "status": status.code, "detail": detail]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/problem+json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Seeded draws for the faults, so a run can be repeated.
actor Dice {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    /// `true` with probability `share`.
    func roll(_ share: Double) -> Bool {
        guard share > 0 else { return false }
        // SplitMix64.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53) < share
    }
}
