import Crypto
import CryptoExtras
import Foundation

/// Why a JOSE object was refused: a malformed serialization, an algorithm not allowed, a key that does not fit,
/// a signature or tag that does not verify.
public struct JOSEError: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// base64url without padding (RFC 7515 §2): the encoding of every JOSE segment.
public enum Base64URL {
    public static func encode<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// nil for anything but the unpadded URL-safe alphabet.
    public static func decode(_ text: some StringProtocol) -> Data? {
        guard text.utf8.allSatisfy({ b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
        }), text.utf8.count % 4 != 1 else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
        return Data(base64Encoded: standard)
    }
}

/// An RSA key as a JSON Web Key (RFC 7517): the public members and, for a private key, `d`, `p`, `q`.
public struct RSAJWK: Sendable, Hashable {
    public var n: Data
    public var e: Data
    public var d: Data?
    public var p: Data?
    public var q: Data?
    public var kid: String?
    public var alg: String?
    /// `key_ops` (`wrapKey` for an encryption key, `verify` for a signature key).
    public var keyOperations: [String]?
    /// `x5c`: the certificate chain, each DER, leaf first.
    public var certificateChain: [Data]

    /// The modulus length in bits.
    public var bitCount: Int {
        let bytes = n.drop { $0 == 0 }
        guard let first = bytes.first else { return 0 }
        return (bytes.count - 1) * 8 + (8 - first.leadingZeroBitCount)
    }

    /// Reads a JWK from its JSON object; refuses anything but `kty: RSA` with `n` and `e`.
    public init(json: [String: Any]) throws {
        guard json["kty"] as? String == "RSA" else { throw JOSEError("the key is not an RSA JWK (kty)") }
        func member(_ name: String) throws -> Data? {
            guard let value = json[name] else { return nil }
            guard let text = value as? String, let data = Base64URL.decode(text) else {
                throw JOSEError("JWK member '\(name)' is not base64url")
            }
            return data
        }
        guard let n = try member("n"), let e = try member("e") else { throw JOSEError("the JWK lacks n or e") }
        self.n = n
        self.e = e
        d = try member("d")
        p = try member("p")
        q = try member("q")
        kid = json["kid"] as? String
        alg = json["alg"] as? String
        keyOperations = json["key_ops"] as? [String]
        certificateChain = try (json["x5c"] as? [String] ?? []).map {
            guard let der = Data(base64Encoded: $0) else { throw JOSEError("JWK member 'x5c' is not base64") }
            return der
        }
    }

    /// Reads a JWK from JSON text.
    public init(jsonText: some StringProtocol) throws {
        guard let object = try? JSONSerialization.jsonObject(with: Data(jsonText.utf8)) as? [String: Any] else {
            throw JOSEError("the JWK is not a JSON object")
        }
        try self.init(json: object)
    }

    /// The public members as a JSON object (`kty`, `n`, `e`, and `kid`, `alg`, `key_ops` when set).
    public var publicJSON: [String: Any] {
        var json: [String: Any] = ["kty": "RSA", "n": Base64URL.encode(n), "e": Base64URL.encode(e)]
        if let kid { json["kid"] = kid }
        if let alg { json["alg"] = alg }
        if let keyOperations { json["key_ops"] = keyOperations }
        if !certificateChain.isEmpty { json["x5c"] = certificateChain.map { $0.base64EncodedString() } }
        return json
    }

    public var encryptionKey: _RSA.Encryption.PublicKey {
        get throws { try _RSA.Encryption.PublicKey(n: n, e: e) }
    }

    public var decryptionKey: _RSA.Encryption.PrivateKey {
        get throws {
            guard let d, let p, let q else { throw JOSEError("the JWK is no private key (d, p, q)") }
            return try _RSA.Encryption.PrivateKey(n: n, e: e, d: d, p: p, q: q)
        }
    }

    public var verificationKey: _RSA.Signing.PublicKey {
        get throws { try _RSA.Signing.PublicKey(n: n, e: e) }
    }

    public var signingKey: _RSA.Signing.PrivateKey {
        get throws {
            guard let d, let p, let q else { throw JOSEError("the JWK is no private key (d, p, q)") }
            return try _RSA.Signing.PrivateKey(n: n, e: e, d: d, p: p, q: q)
        }
    }
}

/// JSON Web Encryption in the compact serialization (RFC 7516), with RSA-OAEP-256 key encryption and A256GCM
/// content encryption: what FIT-Connect prescribes.
public enum JWE {
    /// The five segments of a compact JWE.
    public struct Parts: Sendable {
        public var protectedHeader: String
        public var encryptedKey: Data
        public var iv: Data
        public var ciphertext: Data
        public var tag: Data
        /// The tag as sent (the fifth segment): what FIT-Connect's events quote.
        public var authenticationTag: String
    }

    /// Encrypts `plaintext` for `key` (`alg` RSA-OAEP-256, `enc` A256GCM); `kid` and `cty` go into the header.
    public static func encrypt(_ plaintext: Data, for key: _RSA.Encryption.PublicKey, keyID: String? = nil,
                               contentType: String? = nil) throws -> String {
        var header: [String: String] = ["alg": "RSA-OAEP-256", "enc": "A256GCM"]
        if let keyID { header["kid"] = keyID }
        if let contentType { header["cty"] = contentType }
        let headerJSON = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        let protected = Base64URL.encode(headerJSON)
        let cek = SymmetricKey(size: .bits256)
        let encryptedKey = try cek.withUnsafeBytes { try key.encrypt(Data($0), padding: .PKCS1_OAEP_SHA256) }
        let nonce = AES.GCM.Nonce()
        let sealed = try AES.GCM.seal(plaintext, using: cek, nonce: nonce, authenticating: Data(protected.utf8))
        return [protected, Base64URL.encode(encryptedKey), Base64URL.encode(nonce), Base64URL.encode(sealed.ciphertext),
                Base64URL.encode(sealed.tag)].joined(separator: ".")
    }

    /// Splits a compact JWE into its segments, decoded.
    public static func parts(of compact: String) throws -> Parts {
        let segments = compact.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 5 else { throw JOSEError("a compact JWE has five segments, this one \(segments.count)") }
        guard let key = Base64URL.decode(segments[1]), let iv = Base64URL.decode(segments[2]),
              let ciphertext = Base64URL.decode(segments[3]), let tag = Base64URL.decode(segments[4]),
              Base64URL.decode(segments[0]) != nil else { throw JOSEError("a JWE segment is not base64url") }
        return Parts(protectedHeader: String(segments[0]), encryptedKey: key, iv: iv, ciphertext: ciphertext, tag: tag,
                     authenticationTag: String(segments[4]))
    }

    /// Decrypts a compact JWE; `algorithms` lists the key encryption algorithms accepted (RSA-OAEP-256 by
    /// default; RSA-OAEP for old senders and RFC 7516's example), `enc` must be A256GCM, and no `zip` or `crit`.
    public static func decrypt(_ compact: String, with key: _RSA.Encryption.PrivateKey,
                               algorithms: Set<String> = ["RSA-OAEP-256"]) throws -> (header: [String: Any], plaintext: Data) {
        let parts = try parts(of: compact)
        let header = try JOSEHeader.decode(parts.protectedHeader)
        guard let alg = header["alg"] as? String, algorithms.contains(alg) else {
            throw JOSEError("JWE alg '\(header["alg"] ?? "")' is not accepted (\(algorithms.sorted().joined(separator: ", ")))")
        }
        guard header["enc"] as? String == "A256GCM" else { throw JOSEError("JWE enc must be A256GCM") }
        guard header["zip"] == nil, header["crit"] == nil else { throw JOSEError("JWE zip and crit are not supported") }
        // One answer for every failure from here on, and a content key that cannot be unwrapped replaced by a random
        // one (RFC 7516 §11.5): nothing tells a sender of forged messages which step failed.
        let refused = JOSEError("the JWE cannot be decrypted with this key or does not authenticate")
        var cek = (try? key.decrypt(parts.encryptedKey, padding: alg == "RSA-OAEP" ? .PKCS1_OAEP : .PKCS1_OAEP_SHA256)) ?? Data()
        if cek.count != 32 { cek = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) } }
        guard parts.iv.count == 12, parts.tag.count == 16 else { throw refused }
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: parts.iv), ciphertext: parts.ciphertext, tag: parts.tag)
            let plaintext = try AES.GCM.open(box, using: SymmetricKey(data: cek), authenticating: Data(parts.protectedHeader.utf8))
            return (header, plaintext)
        } catch { throw refused }
    }
}

/// JSON Web Signatures in the compact serialization (RFC 7515): verification with an allow-list of algorithms
/// (PS512 for FIT-Connect's Security Event Tokens; RS256 for RFC 7515's example), and PS512 signing.
public enum JWS {
    /// Verifies a compact JWS with `key`; the header's `alg` must be one of `algorithms`.
    public static func verify(_ compact: String, with key: _RSA.Signing.PublicKey,
                              algorithms: Set<String> = ["PS512"]) throws -> (header: [String: Any], payload: Data) {
        let segments = compact.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count == 3 else { throw JOSEError("a compact JWS has three segments, this one \(segments.count)") }
        let header = try JOSEHeader.decode(String(segments[0]))
        guard let alg = header["alg"] as? String, algorithms.contains(alg) else {
            throw JOSEError("JWS alg '\(header["alg"] ?? "")' is not accepted (\(algorithms.sorted().joined(separator: ", ")))")
        }
        guard header["crit"] == nil else { throw JOSEError("JWS crit is not supported") }
        guard let payload = Base64URL.decode(segments[1]), let signature = Base64URL.decode(segments[2]) else {
            throw JOSEError("a JWS segment is not base64url")
        }
        let input = Data("\(segments[0]).\(segments[1])".utf8)
        let valid: Bool
        switch alg {
        case "PS512":
            valid = key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA512.hash(data: input),
                                         padding: .PSS)
        case "PS256":
            valid = key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: input),
                                         padding: .PSS)
        case "RS256":
            valid = key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: input),
                                         padding: .insecurePKCS1v1_5)
        default:
            throw JOSEError("JWS alg '\(alg)' is not supported")
        }
        guard valid else { throw JOSEError("the JWS signature does not verify") }
        return (header, payload)
    }

    /// Signs `payload` with PS512; the header gets `alg: PS512` besides the given members.
    public static func signPS512(_ payload: Data, header: [String: Any], key: _RSA.Signing.PrivateKey) throws -> String {
        var header = header
        header["alg"] = "PS512"
        let protected = Base64URL.encode(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        let input = protected + "." + Base64URL.encode(payload)
        let signature = try key.signature(for: SHA512.hash(data: Data(input.utf8)), padding: .PSS)
        return input + "." + Base64URL.encode(signature.rawRepresentation)
    }
}

enum JOSEHeader {
    static func decode(_ segment: String) throws -> [String: Any] {
        guard let data = Base64URL.decode(segment),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw JOSEError("the JOSE header is not a base64url JSON object")
        }
        return object
    }
}
