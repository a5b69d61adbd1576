import Foundation
import JOSE
import Postfach
import X509

/// The authentication tags of a submission's encrypted parts: the last segment of each compact JWE. The
/// receiver's accept event names the tags of what it decrypted; a sender compares them with what it sent.
struct AuthenticationTags: Codable, Hashable, Sendable {
    var metadata: String
    var data: String?
    /// By attachment id; nil or empty when there are none (Amtsbote sends none).
    var attachments: [String: String]?

    init(metadata: String, data: String?, attachments: [String: String]? = nil) {
        self.metadata = metadata
        self.data = data
        self.attachments = attachments
    }

    /// The tags of an event payload (`{"authenticationTags": {"metadata": …, "data": …, "attachments": {…}}}`); nil
    /// without them.
    init?(payload: [String: Any]) {
        guard let tags = payload["authenticationTags"] as? [String: Any], let metadata = tags["metadata"] as? String else {
            return nil
        }
        self.init(metadata: metadata, data: tags["data"] as? String, attachments: tags["attachments"] as? [String: String])
    }

    /// Whether two statements name the same parts (no attachments and an empty list are the same).
    func names(sameAs other: AuthenticationTags) -> Bool {
        metadata == other.metadata && data == other.data && (attachments ?? [:]) == (other.attachments ?? [:])
    }
}

/// One Security Event Token (RFC 8417) of a case's event log, read but not yet verified.
struct SecurityEvent {
    /// The token as the log holds it: the evidence a receipt keeps.
    var token: String
    var header: [String: Any]
    var issuer: String
    var subject: String
    var transaction: String?
    var issuedAt: Date
    /// The event's name: its URI after `https://schema.fitko.de/fit-connect/events/` (`accept-submission`); empty
    /// for any other URI.
    var name: String
    var payload: [String: Any]

    /// nil when the token is no readable SET with exactly one event.
    init?(_ token: String) {
        let segments = token.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3,
              let headerData = Base64URL.decode(segments[0]),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
              let claimsData = Base64URL.decode(segments[1]),
              let claims = try? JSONSerialization.jsonObject(with: claimsData) as? [String: Any],
              let issuer = claims["iss"] as? String, let subject = claims["sub"] as? String,
              let events = claims["events"] as? [String: Any], events.count == 1, let (uri, payload) = events.first else {
            return nil
        }
        self.token = token
        self.header = header
        self.issuer = issuer
        self.subject = subject
        transaction = claims["txn"] as? String
        issuedAt = (claims["iat"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) } ?? Date(timeIntervalSince1970: 0)
        let prefix = "https://schema.fitko.de/fit-connect/events/"
        name = uri.hasPrefix(prefix) ? String(uri.dropFirst(prefix.count)) : ""
        self.payload = payload as? [String: Any] ?? [:]
    }
}

extension FITConnectBackend {
    /// The receiver's accept or reject of a delivered submission, from its case's event log: the event must be
    /// issued by the destination for this submission and case, signed (PS512) with a `verify` key of the
    /// destination (at least 4096 bits; with trust roots, its `x5c` chaining to one), and an accept must name the
    /// authentication tags that were submitted. An event that fails any of this is not counted: when no valid
    /// verdict is found beside it, `postfach.confirmation-invalid` is thrown. nil while the receiver has not decided.
    public func confirmation(of delivered: DeliveredItem) async throws -> Confirmation? {
        guard let text = delivered.reference,
              let reference = try? JSONDecoder().decode(Reference.self, from: Data(text.utf8)) else {
            throw PostfachError(code: .confirmationInvalid, message: "no FIT-Connect submission is recorded for this delivery")
        }
        var untrusted: String?
        for event in try await events(of: reference) {
            switch event.name {
            case "accept-submission", "reject-submission":
                do {
                    try await verify(event, of: reference)
                    if event.name == "reject-submission" {
                        let problems = (event.payload["problems"] as? [Any] ?? []).map(Self.problemText)
                        return Confirmation(verdict: .rejected, evidence: event.token, issuedAt: event.issuedAt,
                                            problems: problems.isEmpty ? ["rejected without a stated reason"] : problems)
                    }
                    // Only the receiver's own statement counts about what it decrypted: it must name one of our
                    // encryptions (never the delivery service's word for it).
                    guard let named = AuthenticationTags(payload: event.payload), reference.sent(named) else {
                        throw PostfachError(code: .confirmationInvalid,
                                            message: "the accept event names other authentication tags than were submitted")
                    }
                    return Confirmation(verdict: .accepted, evidence: event.token, issuedAt: event.issuedAt)
                } catch let error as PostfachError where error.code == .confirmationInvalid {
                    untrusted = error.message
                }
            default:
                continue
            }
        }
        if let untrusted { throw PostfachError(code: .confirmationInvalid, message: untrusted) }
        return nil
    }

    /// The events of this submission in its case's log, oldest first, read page by page (500 per page, at most
    /// 10,000 events).
    func events(of reference: Reference) async throws -> [SecurityEvent] {
        var tokens: [String] = []
        while tokens.count < 10_000 {
            let page = try await object("GET", "/v1/cases/\(reference.caseId)/events?limit=500&offset=\(tokens.count)")
            let log = page["eventLog"] as? [String] ?? []
            tokens += log
            guard !log.isEmpty, tokens.count < (page["totalCount"] as? Int ?? 0) else { break }
        }
        return tokens.compactMap(SecurityEvent.init).filter { $0.subject == "submission:\(reference.submissionId)" }
    }

    /// The delivery service's submit event of this submission, if the log holds one.
    func submitEvent(of reference: Reference) async throws -> (event: SecurityEvent, authenticationTags: AuthenticationTags?)? {
        guard let event = try await events(of: reference).first(where: { $0.name == "submit-submission" }) else { return nil }
        return (event, AuthenticationTags(payload: event.payload))
    }

    /// Checks that a receiver's event is the destination's own statement about this submission.
    func verify(_ event: SecurityEvent, of reference: Reference) async throws {
        func untrusted(_ message: String) -> PostfachError { PostfachError(code: .confirmationInvalid, message: message) }
        guard event.issuer == reference.destinationId else {
            throw untrusted("the \(event.name) event is issued by '\(event.issuer.prefix(80))', not by the destination")
        }
        guard event.transaction == "case:\(reference.caseId)" else {
            throw untrusted("the \(event.name) event names another case")
        }
        guard event.header["typ"] as? String == "secevent+jwt", let kid = event.header["kid"] as? String,
              kid.count <= 64, kid.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw untrusted("the \(event.name) event's header lacks typ secevent+jwt or a usable kid")
        }
        let json: [String: Any]
        do { json = try await object("GET", "/v1/destinations/\(reference.destinationId)/keys/\(kid)") } catch let error as PostfachError
            where error.code == .rejected {
            throw untrusted("the destination has no signature key '\(kid)': \(error.message)")
        }
        let key: RSAJWK
        do { key = try RSAJWK(json: json) } catch { throw untrusted("the destination's signature key: \(error)") }
        guard key.keyOperations?.contains("verify") == true, (key.alg ?? "PS512") == "PS512" else {
            throw untrusted("the destination's key '\(kid)' is not a PS512 key for verify")
        }
        guard key.bitCount >= 4096 else {
            throw untrusted("the destination's signature key has \(key.bitCount) bits; FIT-Connect requires 4096")
        }
        if !configuration.trustRoots.isEmpty {
            try await checkChain(of: key, failing: .confirmationInvalid)
            // The certificate must be one for signing, not the encryption key's.
            guard let der = key.certificateChain.first, let leaf = try? Certificate(derEncoded: Array(der)),
                  (try? leaf.extensions.keyUsage)??.digitalSignature == true else {
                throw untrusted("the destination's signature key certificate does not allow digital signatures")
            }
        }
        do { _ = try JWS.verify(event.token, with: try key.verificationKey, algorithms: ["PS512"]) } catch {
            throw untrusted("the \(event.name) event's signature does not verify with the destination's key: \(error)")
        }
    }

    /// A reject event's problem as text: its title and detail (`type` when it has neither).
    static func problemText(_ problem: Any) -> String {
        guard let object = problem as? [String: Any] else { return String(describing: problem).prefix(500).description }
        let parts = ["title", "detail"].compactMap { object[$0] as? String }
        return String((parts.isEmpty ? [object["type"] as? String ?? "?"] : parts).joined(separator: ": ").prefix(500))
    }
}
