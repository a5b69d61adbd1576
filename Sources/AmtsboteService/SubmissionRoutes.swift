import AmtsbotePipeline
import Crypto
import Foundation
import Hummingbird
import HTTPTypes
import Logging
import Metrics
import NIOCore
import Postfach
import XoevReports
import XoevValidation

/// `POST /v1/submissions` and `GET /v1/submissions/{id}`: intake streamed into the pipeline, and where a
/// submission stands.
struct SubmissionRoutes: Sendable {
    let pipeline: Pipeline
    let configuration: IntakeServiceConfiguration
    let queue: QueueGauge
    let slots: IntakeSlots
    let logger: Logger

    static let portalMetadataHeader = HTTPField.Name("Amtsbote-Portal-Metadata")!
    static let idempotencyKeyHeader = HTTPField.Name("Idempotency-Key")!
    static let retryAfterHeader = HTTPField.Name("Retry-After")!

    // MARK: POST

    func submit(_ request: Request, context: IntakeRequestContext) async throws -> Response {
        let instance = request.uri.path
        do {
            return try await admitAndTake(request, context: context)
        } catch let error as ProblemError {
            var problem = error.problem
            context.codes.note(problem.code)
            // A body not read: small ones are skipped over and the connection kept; a large or unknown one is not
            // read at all (the connection closes after the answer).
            if error.bodyUnread, !(request.headers[.contentLength].flatMap(Int.init).map { $0 <= 65_536 } ?? false) {
                cut(context)
                problem.headers[.connection] = "close"
            }
            return problem.response(instance: instance)
        }
    }

    private func admitAndTake(_ request: Request, context: IntakeRequestContext) async throws -> Response {
        guard let type = request.headers[.contentType], Self.isXML(type) else {
            throw ProblemError(Problem(.unsupportedMediaType, "service.media-type",
                                       "the body must be application/xml or text/xml"), bodyUnread: true)
        }
        if let declared = request.headers[.contentLength].flatMap(Int64.init), declared > configuration.maxBodyBytes {
            throw ProblemError(tooLarge(), bodyUnread: true)
        }
        let wait = request.uri.queryParameters["wait"].map(String.init)
        guard wait == nil || wait == "validation" else {
            throw ProblemError(Problem(.badRequest, "service.bad-request", "wait may only be 'validation'"), bodyUnread: true)
        }
        let portal = try portalMetadata(request)
        let key = try idempotencyKey(request)
        guard queue.pending < configuration.maxQueueDepth else {
            throw ProblemError(busy("the queue is full"), bodyUnread: true)
        }
        guard slots.take() else { throw ProblemError(busy("too many uploads at once"), bodyUnread: true) }
        defer { slots.give() }

        guard let key else {
            return try await take(request, context: context, portal: portal, waitForVerdict: wait != nil).response
        }
        switch try await unavailableIfThrows({
            try await pipeline.ledger.reserveIdempotencyKey(client: context.client, key: key,
                                                            for: configuration.idempotencyReservation)
        }) {
        case .inFlight:
            throw ProblemError(Problem(.conflict, "service.idempotency-in-flight",
                                       "a request with this Idempotency-Key is still being processed"), bodyUnread: true)
        case .completed(let outcome):
            return try await replay(outcome, request: request, context: context)
        case .reserved:
            do {
                let taken = try await take(request, context: context, portal: portal, waitForVerdict: wait != nil)
                if let id = taken.submission?.id, let sha = taken.submission?.payloadSHA256 {
                    try? await pipeline.ledger.completeIdempotencyKey(
                        client: context.client, key: key,
                        outcome: IdempotencyOutcome(requestSHA256: sha, submission: id, responseStatus: taken.status,
                                                    responseBody: taken.body))
                } else {
                    try? await pipeline.ledger.releaseIdempotencyKey(client: context.client, key: key)
                }
                return taken.response
            } catch {
                try? await pipeline.ledger.releaseIdempotencyKey(client: context.client, key: key)
                throw error
            }
        }
    }

    /// What one intake answered, kept for a replay under its idempotency key.
    struct Taken {
        var submission: Submission?
        var status: Int
        var body: String
        var response: Response
    }

    /// Reads the body into the pipeline and answers with where the submission stands.
    private func take(_ request: Request, context: IntakeRequestContext, portal: String?,
                      waitForVerdict: Bool) async throws -> Taken {
        let incoming = try await unavailableIfThrows {
            try await pipeline.receive(named: "http:\(context.client)",
                                       origin: IntakeOrigin(client: context.client, portalMetadata: portal))
        }
        let id = incoming.recorded.id ?? 0
        let withinLimit: Bool
        do {
            withinLimit = try await readBody(request) { piece in _ = try incoming.write(piece) }
        } catch let error as SpoolError {
            _ = try? await incoming.abandon(code: "spool.failed", reason: error.message)
            throw ProblemError(Problem(.serviceUnavailable, "spool.failed", "the payload could not be kept"))
        } catch {
            // The connection broke or went idle mid-body: nothing of it is delivered; the sender must resend.
            _ = try? await incoming.abandon(code: "service.body-incomplete", reason: "the body ended early: \(error)")
            context.codes.note("service.body-incomplete")
            throw error
        }
        if !withinLimit {
            _ = try? await incoming.abandon(code: "service.too-large",
                                            reason: "the body crossed \(configuration.maxBodyBytes) bytes")
            cut(context)
            throw ProblemError(tooLarge(extras: ["id": .string(String(id))]))
        }
        let policy = IntakePolicy(schemas: context.allowed.schemas, postfaecher: context.allowed.postfaecher)
        let submission = try await unavailableIfThrows(bodyRead: true) { try await incoming.complete(policy: policy) }
        Counter(label: "amtsbote_verdicts_total",
                dimensions: [("code", submission.state == .rejected ? submission.reasonCode ?? "rejected" : "valid")])
            .increment()
        context.codes.note(submission.reasonCode ?? submission.state.rawValue)
        return answer(submission, report: incoming.report, waitForVerdict: waitForVerdict, instance: request.uri.path)
    }

    /// 202 with the submission's place, or the problem that ended it.
    private func answer(_ submission: Submission, report: ValidationReport?, waitForVerdict: Bool,
                        instance: String) -> Taken {
        let id = String(submission.id ?? 0)
        let location = "/v1/submissions/\(id)"
        let summary: [String: JSONValue] = ["id": .string(id), "status": .string(submission.state.rawValue),
                                            "links": .object(["self": .string(location)])]
        var problem: Problem?
        let code = submission.reasonCode ?? ""
        switch submission.state {
        case .rejected where code == "service.schema-forbidden" || code == "service.postfach-forbidden":
            problem = Problem(.forbidden, code, submission.reason ?? "not allowed for this client", extras: summary)
        case .abandoned:
            problem = Problem(.serviceUnavailable, code, "the submission could not be kept; send it again", extras: summary)
        case .rejected, .unroutable, .conflict:
            guard waitForVerdict else { break }
            var extras = summary
            extras["findings"] = .array((report?.diagnostics ?? []).map { finding in
                .object(["code": .string(finding.code), "severity": .string(finding.severity.rawValue),
                         "line": .number(Double(finding.line)), "column": .number(Double(finding.column)),
                         "path": .string(finding.path), "message": .string(finding.message)])
            })
            problem = Problem(.unprocessableContent, code.isEmpty ? "validation.incomplete" : code,
                              submission.reason ?? "the submission is not deliverable", extras: extras)
        default:
            break
        }
        if let problem {
            let body = problem.body(instance: instance)
            var response = problem.response(instance: instance)
            response.headers[.location] = location
            return Taken(submission: submission, status: Int(problem.status.code), body: body, response: response)
        }
        let body = JSONValue.object(summary).text
        return Taken(submission: submission, status: 202, body: body,
                     response: Response(status: .accepted, headers: [.location: location, .contentType: "application/json"],
                                        body: ResponseBody(byteBuffer: ByteBuffer(string: body))))
    }

    /// A repeat of a completed key: the body is hashed (not kept); the same body gets the first answer again.
    private func replay(_ outcome: IdempotencyOutcome, request: Request, context: IntakeRequestContext) async throws -> Response {
        var hasher = SHA256()
        guard try await readBody(request, { hasher.update(bufferPointer: $0) }) else {
            cut(context)
            throw ProblemError(tooLarge())
        }
        let digest = Hex.lowercase(hasher.finalize())
        guard digest == outcome.requestSHA256 else {
            throw ProblemError(Problem(.unprocessableContent, "service.idempotency-mismatch",
                                       "this Idempotency-Key was used with another body"))
        }
        context.codes.note("service.idempotency-replay")
        let json = outcome.responseStatus == 202 ? "application/json" : "application/problem+json"
        return Response(status: HTTPResponse.Status(code: outcome.responseStatus),
                        headers: [.location: "/v1/submissions/\(outcome.submission)", .contentType: json,
                                  HTTPField.Name("Idempotent-Replayed")!: "true"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: outcome.responseBody)))
    }

    // MARK: GET

    func status(_ request: Request, context: IntakeRequestContext) async throws -> Response {
        let instance = request.uri.path
        guard let text = context.parameters.get("id"), let id = Int64(text), id > 0 else {
            context.codes.note("service.not-found")
            return Problem(.notFound, "service.not-found", "no such submission").response(instance: instance)
        }
        let row: Submission?
        do {
            row = try await pipeline.ledger.submission(id)
        } catch {
            context.codes.note("ledger.unavailable")
            return unavailable().response(instance: instance)
        }
        guard let row else {
            context.codes.note("service.not-found")
            return Problem(.notFound, "service.not-found", "no such submission").response(instance: instance)
        }
        guard (row.client ?? ClientAuthentication.anonymous) == context.client else {
            context.codes.note("service.forbidden")
            return Problem(.forbidden, "service.forbidden", "the submission belongs to another client")
                .response(instance: instance)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: Self.describe(row).text)))
    }

    /// A submission as the API shows it: state, findings (codes and places), routing, delivery; no payload value.
    static func describe(_ row: Submission) -> JSONValue {
        let id = String(row.id ?? 0)
        var object: [String: JSONValue] = [
            "id": .string(id),
            "status": .string(row.state.rawValue),
            "receivedAt": .optional(row.receivedAt),
            "updatedAt": .optional(row.updatedAt),
            "schema": .optional(row.schemaId),
            "sha256": .optional(row.payloadSHA256),
            "size": .optional(row.payloadSize),
            "deliveryId": .optional(row.deliveryId),
            "postfach": .optional(row.postfach),
            "routing": JSONValue.parse(row.routing) ?? .null,
            "attempts": .number(Double(row.attempts)),
            "nextAttemptAt": .optional(row.nextAttemptAt),
            "receipt": JSONValue.parse(row.receipt) ?? .null,
            "purgedAt": .optional(row.purgedAt),
            "links": .object(["self": .string("/v1/submissions/\(id)")]),
            "findings": .array(row.storedFindings.map { finding in
                .object(["code": .string(finding.code), "severity": .string(finding.severity),
                         "line": .number(Double(finding.line)), "column": .number(Double(finding.column)),
                         "path": .string(finding.path),
                         "title": .optional(DiagnosticCatalog.entries.first { $0.code == finding.code }?.meaning)])
            }),
        ]
        if let code = row.reasonCode {
            object["reason"] = .object(["code": .string(code), "type": .string("/v1/problems/\(code)"),
                                        "detail": .optional(row.reason)])
        }
        if let confirmation = row.confirmation {
            // The receiver's answer after delivery, with its signed statement as evidence.
            object["confirmation"] = .object(["state": .string(confirmation.rawValue), "at": .optional(row.confirmedAt),
                                              "evidence": .optional(row.confirmationEvidence)])
        }
        if let original = row.duplicateOf {
            object["duplicateOf"] = .string(String(original))
            object["links"] = .object(["self": .string("/v1/submissions/\(id)"),
                                       "original": .string("/v1/submissions/\(original)")])
        }
        return .object(object)
    }

    // MARK: Parts

    static func isXML(_ contentType: String) -> Bool {
        let type = contentType.split(separator: ";", maxSplits: 1).first.map {
            $0.trimmingCharacters(in: .whitespaces).lowercased()
        } ?? ""
        return type == "application/xml" || type == "text/xml"
    }

    /// The `Amtsbote-Portal-Metadata` header: a JSON object, kept as sent.
    private func portalMetadata(_ request: Request) throws -> String? {
        guard let text = request.headers[Self.portalMetadataHeader] else { return nil }
        guard text.utf8.count <= configuration.maxPortalMetadataBytes else {
            throw ProblemError(Problem(.badRequest, "service.bad-metadata",
                                       "Amtsbote-Portal-Metadata is longer than \(configuration.maxPortalMetadataBytes) bytes"),
                               bodyUnread: true)
        }
        guard case .object? = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else {
            throw ProblemError(Problem(.badRequest, "service.bad-metadata",
                                       "Amtsbote-Portal-Metadata must be a JSON object"), bodyUnread: true)
        }
        return text
    }

    /// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
    private func idempotencyKey(_ request: Request) throws -> String? {
        guard let key = request.headers[Self.idempotencyKeyHeader] else { return nil }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw ProblemError(Problem(.badRequest, "service.bad-idempotency-key",
                                       "Idempotency-Key must be 1 to 255 visible ASCII characters"), bodyUnread: true)
        }
        return key
    }

    private func tooLarge(extras: [String: JSONValue] = [:]) -> Problem {
        var problem = Problem(.contentTooLarge, "service.too-large",
                              "the body is larger than \(configuration.maxBodyBytes) bytes", extras: extras)
        problem.headers[.connection] = "close"
        return problem
    }

    private func busy(_ detail: String) -> Problem {
        var problem = Problem(.tooManyRequests, "service.busy", detail)
        problem.headers[Self.retryAfterHeader] = String(configuration.retryAfterSeconds)
        return problem
    }

    private func unavailable() -> Problem {
        var problem = Problem(.serviceUnavailable, "ledger.unavailable", "the ledger cannot be reached; try again")
        problem.headers[Self.retryAfterHeader] = String(configuration.retryAfterSeconds)
        return problem
    }

    /// Hands the body to `take` piece by piece, up to ``IntakeServiceConfiguration/maxBodyBytes``; false when it
    /// went past the limit (the rest is left unread).
    private func readBody(_ request: Request, _ take: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        var received: Int64 = 0
        for try await buffer in request.body {
            received += Int64(buffer.readableBytes)
            guard received <= configuration.maxBodyBytes else { return false }
            try buffer.withUnsafeReadableBytes(take)
        }
        return true
    }

    /// Runs a ledger call; an unreachable ledger becomes a 503 problem.
    private func unavailableIfThrows<T>(bodyRead: Bool = false, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as LedgerError {
            logger.warning("ledger call failed", metadata: ["code": "\(error.code)"])
            throw ProblemError(unavailable(), bodyUnread: !bodyRead)
        }
    }

    /// Stops reading the connection: the rest of an unwanted body is not read; the connection closes after the answer.
    private func cut(_ context: IntakeRequestContext) {
        context.channel.close(mode: .input, promise: nil)
    }
}

/// A problem answer thrown out of a handler's steps.
struct ProblemError: Error {
    let problem: Problem
    /// Thrown before the body was read.
    let bodyUnread: Bool
    init(_ problem: Problem, bodyUnread: Bool = false) {
        self.problem = problem
        self.bodyUnread = bodyUnread
    }
}
