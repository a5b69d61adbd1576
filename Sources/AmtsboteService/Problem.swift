import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
import XoevReports

/// An RFC 9457 problem (`application/problem+json`). Its `type` is `/v1/problems/<code>`, resolvable against the
/// service (the code's meaning and fix, as `amtsbote explain` prints them), and `code` repeats the stable code.
struct Problem: Sendable {
    var status: HTTPResponse.Status
    var code: String
    var detail: String
    /// Extension members (findings, the submission's id and state).
    var extras: [String: JSONValue] = [:]
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ detail: String, extras: [String: JSONValue] = [:]) {
        self.status = status
        self.code = code
        self.detail = detail
        self.extras = extras
    }

    /// The catalogue's one-line meaning of `code`, or the HTTP reason phrase.
    var title: String {
        DiagnosticCatalog.entries.first { $0.code == code }?.meaning ?? status.reasonPhrase
    }

    func body(instance: String) -> String {
        var members = extras
        members["type"] = .string("/v1/problems/\(code)")
        members["title"] = .string(title)
        members["status"] = .number(Double(status.code))
        members["detail"] = .string(detail)
        members["code"] = .string(code)
        members["instance"] = .string(instance)
        return JSONValue.object(members).text
    }

    func response(instance: String) -> Response {
        var fields = headers
        fields[.contentType] = "application/problem+json"
        return Response(status: status, headers: fields,
                        body: ResponseBody(byteBuffer: ByteBuffer(string: body(instance: instance))))
    }
}

/// A JSON value written with sorted keys (stable output for clients, tests and replayed answers).
enum JSONValue: Sendable, Hashable, Decodable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([String: JSONValue])

    static func optional(_ text: String?) -> JSONValue { text.map(JSONValue.string) ?? .null }
    static func optional(_ number: Int64?) -> JSONValue { number.map { .number(Double($0)) } ?? .null }
    static func optional(_ date: Date?) -> JSONValue { date.map { .string(timestamp($0)) } ?? .null }

    /// Parses JSON text kept in the ledger (routing decision, receipt); nil when it is not JSON.
    static func parse(_ text: String?) -> JSONValue? {
        guard let data = text?.data(using: .utf8) else { return nil }
        return try? JSONDecoder().decode(JSONValue.self, from: data)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let flag = try? container.decode(Bool.self) { self = .bool(flag) }
        else if let number = try? container.decode(Double.self) { self = .number(number) }
        else if let text = try? container.decode(String.self) { self = .string(text) }
        else if let items = try? container.decode([JSONValue].self) { self = .array(items) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    var text: String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .string(let text): Self.quote(text, into: &out)
        case .number(let number):
            if number == number.rounded(), abs(number) < 1e15 { out += String(Int64(number)) } else { out += "\(number)" }
        case .bool(let flag): out += flag ? "true" : "false"
        case .null: out += "null"
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.write(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                Self.quote(key, into: &out)
                out += ":"
                members[key]!.write(into: &out)
            }
            out += "}"
        }
    }

    static func quote(_ text: String, into out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}
