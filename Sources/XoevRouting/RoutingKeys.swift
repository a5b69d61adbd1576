/// Routing keys taken from documents. Every initialiser checks strictly (ASCII digits, exact lengths) and returns
/// nil otherwise: a key is data, and only a checked key is ever compared, stored or used to pick a Postfach.

/// `true` when `text` is exactly `count` ASCII digits.
func isDigits(_ text: String, count: Int) -> Bool {
    text.utf8.count == count && text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
}

/// Amtlicher Gemeindeschlüssel: 8 digits, Land 2 · Regierungsbezirk 1 · Kreis 2 · Gemeinde 3.
public struct AGS: Hashable, Sendable, CustomStringConvertible {
    /// The 8 digits.
    public let digits: String

    /// Accepts exactly 8 ASCII digits.
    public init?(_ text: String) {
        guard isDigits(text, count: 8) else { return nil }
        digits = text
    }

    /// The Kreis part: the first 5 digits.
    public var kreis: String { String(digits.prefix(5)) }
    public var description: String { digits }
}

/// Amtlicher Regionalschlüssel: 12 digits, Land 2 · RB 1 · Kreis 2 · Gemeindeverband 4 · Gemeinde 3.
public struct ARS: Hashable, Sendable, CustomStringConvertible {
    /// The 12 digits.
    public let digits: String

    /// Accepts exactly 12 ASCII digits.
    public init?(_ text: String) {
        guard isDigits(text, count: 12) else { return nil }
        digits = text
    }

    /// AGS = ARS[0..<5] + ARS[9..<12].
    public var ags: AGS {
        let d = Array(digits)
        // Safety of the force unwrap: 8 of the 12 checked digits.
        return AGS(String(d[0..<5]) + String(d[9..<12]))!
    }

    /// The Gemeindeverband part: the first 9 digits.
    public var verband: String { String(digits.prefix(9)) }
    public var description: String { digits }
}

/// Leistungsschlüssel (LeiKa / FIM Leistung): 14 digits starting with 99.
public struct Leistungsschluessel: Hashable, Sendable, CustomStringConvertible {
    /// The 14 digits.
    public let digits: String

    /// Accepts exactly 14 ASCII digits starting with `99`.
    public init?(_ text: String) {
        guard isDigits(text, count: 14), text.hasPrefix("99") else { return nil }
        digits = text
    }

    public var description: String { digits }
}

/// Behördenkennung of an XÖV header: DVDV prefix and kennung, written `praefix:kennung` (e.g. `psw:01003110`).
public struct Behoerdenkennung: Hashable, Sendable, CustomStringConvertible {
    /// DVDV prefix, lower-case ASCII letters and digits (2–8).
    public let praefix: String
    /// The authority's identifier, ASCII letters and digits (1–20).
    public let kennung: String

    /// Accepts a prefix and a kennung separately.
    public init?(praefix: String, kennung: String) {
        let p = praefix.lowercased()
        guard (2...8).contains(p.utf8.count), p.utf8.allSatisfy(Self.isAlphanumeric),
              (1...20).contains(kennung.utf8.count), kennung.utf8.allSatisfy(Self.isAlphanumeric) else { return nil }
        self.praefix = p
        self.kennung = kennung
    }

    /// Accepts `praefix:kennung`.
    public init?(_ combined: String) {
        let parts = combined.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        self.init(praefix: String(parts[0]), kennung: String(parts[1]))
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    public var description: String { "\(praefix):\(kennung)" }
}

/// The name of a Postfach in routing tables and configuration: lower-case ASCII letters, digits, `.`, `_` and
/// `-`, starting with a letter or digit, at most 64 characters. Safe as a directory name.
public struct PostfachName: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    /// The name.
    public let value: String

    /// Accepts a well-formed name.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard (1...64).contains(bytes.count) else { return nil }
        for (index, byte) in bytes.enumerated() {
            let alnum = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
            let punctuation = byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            guard alnum || (index > 0 && punctuation) else { return nil }
        }
        value = text
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let name = PostfachName(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid Postfach name '\(text)'"))
        }
        self = name
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }

    public static func < (lhs: PostfachName, rhs: PostfachName) -> Bool { lhs.value < rhs.value }
    public var description: String { value }
}
