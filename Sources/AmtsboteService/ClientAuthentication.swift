import Crypto
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import NIOSSL

/// The request context of the service: who is asking (set by ``ClientAuthentication``) and the codes the request
/// ended with (for the request's log line and metrics).
public struct IntakeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The authenticated client; `anonymous` when the service runs without clients (loopback only).
    public var client: String = ClientAuthentication.anonymous
    /// What the request may submit.
    var allowed: (schemas: Set<String>?, postfaecher: Set<String>?) = (nil, nil)
    /// The connection, to cut an upload short.
    let channel: any Channel
    /// The client and the stable codes of the outcome (the problem's code, the verdict), for the log line written
    /// after the handler returned; never payload values.
    var codes = RequestNotes()

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// What the logging middleware reports about a request once its handler returned: the client authentication found
/// (the context it holds is a copy made before) and the codes noted on the way.
final class RequestNotes: @unchecked Sendable {
    // Safety: every access holds the lock.
    private let lock = NSLock()
    private var codes: [String] = []
    private var clientName = ClientAuthentication.anonymous

    var client: String {
        get { lock.lock(); defer { lock.unlock() }; return clientName }
        set { lock.lock(); defer { lock.unlock() }; clientName = newValue }
    }

    func note(_ code: String) {
        lock.lock(); defer { lock.unlock() }
        codes.append(code)
    }

    var all: [String] {
        lock.lock(); defer { lock.unlock() }
        return codes
    }
}

/// Who is asking: the client whose certificate the TLS handshake verified (mutual TLS, matched by the certificate's
/// SHA-256 fingerprint), else the client whose bearer token this is (compared as SHA-256 hashes in constant time
/// against every configured client). A token of another client than the certificate's is refused. Without clients
/// every request is `anonymous` (the configuration then allows loopback only). Health probes pass unauthenticated.
struct ClientAuthentication: RouterMiddleware {
    typealias Context = IntakeRequestContext
    static let anonymous = "anonymous"
    let clients: [ServiceClient]
    /// Paths that need no token (health and readiness probes, metrics, problem descriptions).
    let open: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if clients.isEmpty || open.contains(request.uri.path) || request.uri.path.hasPrefix("/v1/problems/") {
            return try await next(request, context)
        }
        let token = request.headers[.authorization].flatMap { header in
            header.count > 7 && header.prefix(7).lowercased() == "bearer " ? String(header.dropFirst(7)) : nil
        }
        let client: ServiceClient
        if let certified = await Self.certifiedClient(on: context.channel, among: clients) {
            if let token, Self.match(token: token, among: clients)?.name != certified.name {
                return refuse("the bearer token does not belong to the client of the certificate", context: context,
                              request: request)
            }
            client = certified
        } else {
            guard let token else {
                return refuse("no bearer token (Authorization: Bearer …) and no client certificate of a client",
                              context: context, request: request)
            }
            guard let match = Self.match(token: token, among: clients) else {
                return refuse("the bearer token belongs to no client", context: context, request: request)
            }
            client = match
        }
        context.client = client.name
        context.codes.client = client.name
        context.allowed = (client.schemas, client.postfaecher)
        return try await next(request, context)
    }

    private func refuse(_ detail: String, context: Context, request: Request) -> Response {
        context.codes.note("service.unauthorized")
        var problem = Problem(.unauthorized, "service.unauthorized", detail)
        problem.headers[.wwwAuthenticate] = "Bearer realm=\"amtsbote\""
        return problem.response(instance: request.uri.path)
    }

    /// The client whose hash equals SHA-256(`token`). Every client's hash is compared in full, whatever matched.
    static func match(token: String, among clients: [ServiceClient]) -> ServiceClient? {
        let digest = Array(SHA256.hash(data: Data(token.utf8)))
        var found: ServiceClient?
        for client in clients {
            guard let expected = client.tokenSHA256 else { continue }
            var difference: UInt8 = 0
            for (a, b) in zip(digest, expected) { difference |= a ^ b }
            if difference == 0 && expected.count == digest.count && found == nil { found = client }
        }
        return found
    }

    /// The client of the certificate the connection's TLS handshake verified; nil without TLS, without a client
    /// certificate, or for a certificate no client names.
    static func certifiedClient(on channel: any Channel, among clients: [ServiceClient]) async -> ServiceClient? {
        guard clients.contains(where: { !$0.certificateSHA256.isEmpty }),
              let certificate = try? await channel.nioSSL_peerCertificate().get(),
              let der = try? certificate.toDERBytes() else { return nil }
        let fingerprint = Array(SHA256.hash(data: der))
        return clients.first { $0.certificateSHA256.contains(fingerprint) }
    }
}
