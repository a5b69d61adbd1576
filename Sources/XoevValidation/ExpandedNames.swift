/// A name as libxml2 quotes it in messages, `{namespace}local`, with the prefix the document itself uses for it.
///
/// Real XÖV namespaces are long URLs, so a message that quotes two or three names becomes unreadable. Findings
/// therefore show names with the document's own prefixes (`xwas:probennahmestelleKategorie`) and keep the expanded
/// names here, as structured fields.
public struct ExpandedName: Sendable, Codable, Hashable {
    /// The namespace URI ("" for no namespace).
    public var namespace: String
    /// The local name.
    public var local: String
    /// The prefix the document binds to the namespace in the open elements ("" for the default namespace); nil
    /// when none of them is in that namespace (the name is then shown expanded).
    public var prefix: String?

    public init(namespace: String, local: String, prefix: String?) {
        self.namespace = namespace
        self.local = local
        self.prefix = prefix
    }

    enum CodingKeys: String, CodingKey { case namespace, local, prefix }

    /// Encodes `prefix` as null when none is bound (the key is always present).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(namespace, forKey: .namespace)
        try c.encode(local, forKey: .local)
        try c.encode(prefix, forKey: .prefix)
    }

    /// `prefix:local`, `local` in the default namespace, `{namespace}local` where the document binds no prefix.
    public var display: String {
        switch prefix {
        case .none: "{\(namespace)}\(local)"
        case .some(""): local
        case .some(let prefix): "\(prefix):\(local)"
        }
    }
}

enum ExpandedNames {
    /// Rewrites every `{namespace}local` of `message` with the document's prefix (`prefixFor`); returns the
    /// readable message and the names found, in order, each once.
    static func readable(_ message: String, prefixFor: (String) -> String?) -> (message: String, names: [ExpandedName]) {
        guard message.contains("{") else { return (message, []) }
        var result = ""
        var names: [ExpandedName] = []
        var rest = Substring(message)
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            let afterOpen = rest.index(after: open)
            // A namespace URI has a scheme (`urn:`, `https:`); `{2}` in a quoted pattern is no name.
            guard let close = rest[afterOpen...].firstIndex(of: "}"), rest[afterOpen..<close].contains(":"),
                  !rest[afterOpen..<close].contains(where: { $0 == " " || $0 == "{" || $0 == "'" }) else {
                result.append("{")
                rest = rest[afterOpen...]
                continue
            }
            let namespace = String(rest[afterOpen..<close])
            let localStart = rest.index(after: close)
            let localEnd = rest[localStart...].firstIndex { !Self.isNameCharacter($0) } ?? rest.endIndex
            guard localStart < localEnd else {
                result += rest[open...close]
                rest = rest[localStart...]
                continue
            }
            let name = ExpandedName(namespace: namespace, local: String(rest[localStart..<localEnd]),
                                    prefix: prefixFor(namespace))
            if !names.contains(name) { names.append(name) }
            result += name.display
            rest = rest[localEnd...]
        }
        result += rest
        return (result, names)
    }

    /// Characters of an XML NCName that libxml2's messages can quote (letters, digits, `.`, `-`, `_`, and
    /// non-ASCII letters such as umlauts).
    static func isNameCharacter(_ character: Character) -> Bool {
        character.isLetter || character.isNumber || character == "." || character == "-" || character == "_"
    }
}
