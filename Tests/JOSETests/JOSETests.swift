import CryptoExtras
import Foundation
import JOSE
import Testing

/// The JOSE code against the RFCs' worked examples (RFC 7516 Appendix A.1, RFC 7515 Appendix A.2) and round trips.
@Suite("JOSE: RFC 7516 and RFC 7515 examples")
struct JOSETests {
    // RFC 7516 Appendix A.1: RSA-OAEP and A256GCM; the recipient's key and the resulting compact JWE.
    static let a1Key = """
        {"kty":"RSA",
         "n":"oahUIoWw0K0usKNuOR6H4wkf4oBUXHTxRvgb48E-BVvxkeDNjbC4he8rUWcJoZmds2h7M70imEVhRU5djINXtqllXI4DFqcI1DgjT9LewND8MW2Krf3Spsk_ZkoFnilakGygTwpZ3uesH-PFABNIUYpOiN15dsQRkgr0vEhxN92i2asbOenSZeyaxziK72UwxrrKoExv6kc5twXTq4h-QChLOln0_mtUZwfsRaMStPs6mS6XrgxnxbWhojf663tuEQueGC-FCMfra36C9knDFGzKsNa7LZK2djYgyD3JR_MB_4NUJW_TqOQtwHYbxevoJArm-L5StowjzGy-_bq6Gw",
         "e":"AQAB",
         "d":"kLdtIj6GbDks_ApCSTYQtelcNttlKiOyPzMrXHeI-yk1F7-kpDxY4-WY5NWV5KntaEeXS1j82E375xxhWMHXyvjYecPT9fpwR_M9gV8n9Hrh2anTpTD93Dt62ypW3yDsJzBnTnrYu1iwWRgBKrEYY46qAZIrA2xAwnm2X7uGR1hghkqDp0Vqj3kbSCz1XyfCs6_LehBwtxHIyh8Ripy40p24moOAbgxVw3rxT_vlt3UVe4WO3JkJOzlpUf-KTVI2Ptgm-dARxTEtE-id-4OJr0h-K-VFs3VSndVTIznSxfyrj8ILL6MG_Uv8YAu7VILSB3lOW085-4qE3DzgrTjgyQ",
         "p":"1r52Xk46c-LsfB5P442p7atdPUrxQSy4mti_tZI3Mgf2EuFVbUoDBvaRQ-SWxkbkmoEzL7JXroSBjSrK3YIQgYdMgyAEPTPjXv_hI2_1eTSPVZfzL0lffNn03IXqWF5MDFuoUYE0hzb2vhrlN_rKrbfDIwUbTrjjgieRbwC6Cl0",
         "q":"wLb35x7hmQWZsWJmB_vle87ihgZ19S8lBEROLIsZG4ayZVe9Hi9gDVCOBmUDdaDYVTSNx_8Fyw1YYa9XGrGnDew00J28cRUoeBB_jKI1oma0Orv1T9aXIWxKwd4gvxFImOWr3QRL9KEBRzk2RatUBnmDZJTIAfwTs0g68UZHvtc"}
        """
    static let a1Compact = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ."
        + "OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-"
        + "StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPG"
        + "LBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg."
        + "48V1_ALb6US04U3b."
        + "5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A."
        + "XFBoMYUZodetZdvTiFvSkQ"

    // RFC 7515 Appendix A.2: RS256, the signer's public key and the compact JWS.
    static let a2Key = """
        {"kty":"RSA",
         "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
         "e":"AQAB",
         "d":"Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ",
         "p":"4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc",
         "q":"uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc"}
        """
    static let a2Compact = "eyJhbGciOiJSUzI1NiJ9."
        + "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ."
        + "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZ"
        + "cAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsq"
        + "tFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"

    @Test("RFC 7516 A.1: the example JWE decrypts to its plaintext; a changed tag or a disallowed algorithm is refused")
    func rfc7516() throws {
        let key = try RSAJWK(jsonText: Self.a1Key)
        let (header, plaintext) = try JWE.decrypt(Self.a1Compact, with: key.decryptionKey, algorithms: ["RSA-OAEP"])
        #expect(String(decoding: plaintext, as: UTF8.self) == "The true sign of intelligence is not knowledge but imagination.")
        #expect(header["alg"] as? String == "RSA-OAEP" && header["enc"] as? String == "A256GCM")
        #expect(try JWE.parts(of: Self.a1Compact).authenticationTag == "XFBoMYUZodetZdvTiFvSkQ")
        // Only RSA-OAEP-256 unless told otherwise.
        #expect(throws: JOSEError.self) { try JWE.decrypt(Self.a1Compact, with: key.decryptionKey) }
        let tampered = String(Self.a1Compact.dropLast(2)) + "AA"
        #expect(throws: JOSEError.self) { try JWE.decrypt(tampered, with: key.decryptionKey, algorithms: ["RSA-OAEP"]) }
        #expect(throws: JOSEError.self) { try JWE.parts(of: "a.b.c") }
    }

    @Test("RFC 7515 A.2: the example JWS verifies as RS256; PS512 only refuses it; a changed payload fails")
    func rfc7515() throws {
        let key = try RSAJWK(jsonText: Self.a2Key)
        let (header, payload) = try JWS.verify(Self.a2Compact, with: key.verificationKey, algorithms: ["RS256"])
        #expect(header["alg"] as? String == "RS256")
        #expect(String(decoding: payload, as: UTF8.self) == "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}")
        #expect(throws: JOSEError.self) { try JWS.verify(Self.a2Compact, with: key.verificationKey) }
        var segments = Self.a2Compact.split(separator: ".").map(String.init)
        segments[1] = Base64URL.encode(Data("{\"iss\":\"mallory\"}".utf8))
        #expect(throws: JOSEError.self) { try JWS.verify(segments.joined(separator: "."), with: key.verificationKey, algorithms: ["RS256"]) }
    }

    @Test("round trips: RSA-OAEP-256/A256GCM encryption and PS512 signatures with the examples' keys")
    func roundTrips() throws {
        let key = try RSAJWK(jsonText: Self.a1Key)
        let plaintext = Data("<antrag>Grüße aus Köln</antrag>".utf8)
        let compact = try JWE.encrypt(plaintext, for: key.encryptionKey, keyID: "k-1", contentType: "application/xml")
        let (header, opened) = try JWE.decrypt(compact, with: key.decryptionKey)
        #expect(opened == plaintext)
        #expect(header["alg"] as? String == "RSA-OAEP-256" && header["kid"] as? String == "k-1"
                && header["cty"] as? String == "application/xml")
        let other = try RSAJWK(jsonText: Self.a2Key)
        #expect(throws: JOSEError.self) { try JWE.decrypt(compact, with: other.decryptionKey) }

        let signed = try JWS.signPS512(Data("{\"jti\":\"1\"}".utf8), header: ["typ": "secevent+jwt", "kid": "s-1"],
                                       key: other.signingKey)
        let (signedHeader, payload) = try JWS.verify(signed, with: other.verificationKey)
        #expect(signedHeader["typ"] as? String == "secevent+jwt" && String(decoding: payload, as: UTF8.self) == "{\"jti\":\"1\"}")
        #expect(throws: JOSEError.self) { try JWS.verify(signed, with: key.verificationKey) }
        #expect(throws: JOSEError.self) { try JWS.verify(signed, with: other.verificationKey, algorithms: ["RS256"]) }
    }

    @Test("base64url: no padding, no standard alphabet; JWK members and key size")
    func encoding() throws {
        #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
        #expect(Base64URL.decode("-_8") == Data([0xfb, 0xff]))
        #expect(Base64URL.decode("+/8=") == nil)
        #expect(Base64URL.decode("a") == nil)
        let key = try RSAJWK(jsonText: Self.a1Key)
        #expect(key.bitCount == 2048)
        #expect(throws: JOSEError.self) { try RSAJWK(jsonText: #"{"kty":"EC","crv":"P-256"}"#) }
        #expect(throws: JOSEError.self) { try RSAJWK(jsonText: #"{"kty":"RSA","n":"a+b","e":"AQAB"}"#) }
    }
}
