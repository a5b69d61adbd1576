import Crypto
import Foundation
import Postfach
import XoevTransform
import XoevValidation

/// One transformation of the configuration: the deliveries it applies to (by Postfach and schema id; nil matches
/// every one), its stylesheets in order, and optionally the schema its output must be valid against.
public struct TransformationRule: Sendable {
    /// The rule's name, recorded with each delivery it transformed.
    public var name: String
    public var postfach: String?
    public var schemaId: String?
    /// Run in order, each on the output of the one before.
    public var steps: [Stylesheet]
    /// Validates the output before delivery; nil: not validated.
    public var target: Validator?
    public var limits: TransformLimits

    public init(name: String, postfach: String? = nil, schemaId: String? = nil, steps: [Stylesheet], target: Validator? = nil,
                limits: TransformLimits = TransformLimits()) {
        self.name = name
        self.postfach = postfach
        self.schemaId = schemaId
        self.steps = steps
        self.target = target
        self.limits = limits
    }

    /// The parameters every stylesheet may declare as `xsl:param`, from the facts of one delivery: `deliveryId`,
    /// `receivedAt` (xs:dateTime, UTC), `postfach`, `schemaId`, `submission` (the ledger id), `leika`, `ags`.
    public static func parameters(deliveryId: String, receivedAt: Date, postfach: String, schemaId: String?,
                                  submission: Int64?, leika: String?, ags: String?) -> [String: String] {
        ["deliveryId": deliveryId, "receivedAt": InternetDateTime.string(from: receivedAt), "postfach": postfach,
         "schemaId": schemaId ?? "", "submission": submission.map { "\($0)" } ?? "0", "leika": leika ?? "", "ags": ags ?? ""]
    }

    /// Whether the rule applies to a delivery to `postfach` of a payload valid against `schemaId`.
    public func applies(postfach: String, schemaId: String?) -> Bool {
        (self.postfach == nil || self.postfach == postfach) && (self.schemaId == nil || self.schemaId == schemaId)
    }

    /// Runs the steps on `data` and validates the output against the target schema, if the rule names one.
    /// - Throws: ``TransformError`` (`transform.output-invalid` when the output does not fit the target schema; its
    ///   message names the first finding's code and place, never a value).
    public func run(_ data: Data, parameters: [String: String]) throws -> Data {
        var data = data
        for step in steps { data = try step.transform(data, parameters: parameters, limits: limits) }
        if let target {
            let report = target.validate(bytes: Array(data), named: "output of \(name)")
            if !report.isValid {
                let first = report.errors.first
                throw TransformError(code: .outputInvalid, file: steps.last?.path ?? name, line: 0,
                                     message: "the output of '\(name)' is not valid against its target schema: "
                                         + (first.map { "\($0.code) at line \($0.line), column \($0.column)" } ?? report.verdict.rawValue))
            }
        }
        return data
    }
}

extension Array where Element == TransformationRule {
    /// The first rule that applies to a delivery to `postfach` of a payload valid against `schemaId`.
    public func rule(postfach: String, schemaId: String?) -> TransformationRule? {
        first { $0.applies(postfach: postfach, schemaId: schemaId) }
    }
}

/// What the ledger records of a transformation, in the stored receipt: the rule, each step's stylesheet and SHA-256,
/// and the hashes of the payload as received and as delivered.
public struct TransformationRecord: Codable, Sendable, Hashable {
    public struct Step: Codable, Sendable, Hashable {
        public var stylesheet: String
        public var sha256: String
    }

    public var rule: String
    public var steps: [Step]
    public var originalSHA256: String
    public var outputSHA256: String
    public var outputSize: Int64
}

extension Pipeline {
    /// Runs `rule` on `payload` and stages the output in a scratch file in `scratch` (the spool's
    /// folder) for the backend to read; ``StagedOutput/remove()`` ends it.
    static func transform(_ payload: PayloadSource, with rule: TransformationRule, parameters: [String: String],
                          originalSHA256: String, scratch: URL) throws -> (output: StagedOutput, record: TransformationRecord) {
        let data = try rule.run(try payload.contents(), parameters: parameters)
        let output = try StagedOutput(data, in: scratch)
        let record = TransformationRecord(
            rule: rule.name, steps: rule.steps.map { .init(stylesheet: ($0.path as NSString).lastPathComponent, sha256: $0.sha256) },
            originalSHA256: originalSHA256, outputSHA256: Hex.lowercase(SHA256.hash(data: data)),
            outputSize: Int64(data.count))
        return (output, record)
    }

    /// The receipt as the ledger keeps it, with the transformation that ran before the delivery, if one did.
    static func storedReceipt(_ receipt: Receipt, transformation: TransformationRecord?) throws -> String {
        String(decoding: try JSONEncoder.receipts.encode(StoredReceipt(receipt: receipt, transformation: transformation)),
               as: UTF8.self)
    }
}

/// The receipt's fields and, beside them, the transformation that ran before the delivery.
private struct StoredReceipt: Encodable {
    let receipt: Receipt
    let transformation: TransformationRecord?

    private enum CodingKeys: String, CodingKey { case transformation }

    func encode(to encoder: any Encoder) throws {
        try receipt.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(transformation, forKey: .transformation)
    }
}

/// A transformation's output while a backend delivers it. On Linux the file has no name in any folder (created and
/// unlinked at once; the backend opens it as `/proc/self/fd/N`), so a process that dies mid-delivery leaves nothing
/// behind; elsewhere it is a hidden file in the spool folder, removed afterwards.
struct StagedOutput {
    /// Where the backend reads the output.
    let file: URL
    private let descriptor: Int32
    private let named: Bool

    init(_ data: Data, in folder: URL) throws {
        var template = Array(folder.appendingPathComponent(".transformed-XXXXXX").path.utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else {
            throw PostfachError(code: .unavailable, message: "cannot stage the transformed payload: \(String(cString: strerror(errno)))")
        }
        let path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        guard fcntl(descriptor, F_SETFD, FD_CLOEXEC) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(path)
            close(descriptor)
            throw PostfachError(code: .unavailable, message: "cannot stage the transformed payload: \(reason)")
        }
        #if os(Linux)
        unlink(path)
        file = URL(fileURLWithPath: "/proc/self/fd/\(descriptor)")
        named = false
        #else
        file = URL(fileURLWithPath: path)
        named = true
        #endif
        self.descriptor = descriptor
        let written = data.withUnsafeBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let count = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if count < 0 { if errno == EINTR { continue }; return false }
                offset += count
            }
            return true
        }
        guard written else {
            let reason = String(cString: strerror(errno))
            remove()
            throw PostfachError(code: .unavailable, message: "cannot stage the transformed payload: \(reason)")
        }
    }

    /// Ends the staging: the output is gone.
    func remove() {
        if named { unlink(file.path) }
        close(descriptor)
    }
}
