import Foundation

/// What the safe profile must do with each file of `../shared/bad-inputs` (catalogue.tsv, README.md): accept it, or
/// refuse it with this code. Where the catalogue leaves a choice ("read correctly or reject"), the stricter one is
/// taken and noted.
public enum BadInputExpectations {
    public static let small: [String: String?] = [
        "00-valid-control.xml": nil,
        "01-billion-laughs.xml": "input.doctype-forbidden",
        "02-quadratic-blowup.xml": "input.doctype-forbidden",
        "03-xxe-file-passwd.xml": "input.doctype-forbidden",
        "04-xxe-ssrf-http.xml": "input.doctype-forbidden",
        "05a-external-dtd-http.xml": "input.doctype-forbidden",
        "05b-external-dtd-local.xml": "input.doctype-forbidden",
        "06a-parameter-entity-oob.xml": "input.doctype-forbidden",
        "06b-parameter-entity-local-file.xml": "input.doctype-forbidden",
        "06c-parameter-entity-laughs.xml": "input.doctype-forbidden",
        "06d-entity-recursion.xml": "input.doctype-forbidden",
        "07a-xinclude-file.xml": "schema.element.undeclared",
        "07b-xinclude-http.xml": "schema.element.undeclared",
        "08a-schemalocation-remote.xml": nil,
        "08b-schemalocation-local.xml": nil,
        "08c-nonamespace-schemalocation-permissive.xml": "schema.element.undeclared",
        "09-dtd-default-namespace-injection.xml": "input.doctype-forbidden",
        "10a-invalid-utf8.xml": "xml.encoding",
        "10b-overlong-utf8-lt.xml": "xml.encoding",
        "10c-utf8-surrogate.xml": "xml.encoding",
        "11a-utf16le-bom.xml": "xml.encoding",
        "11b-utf16-no-bom-decl-utf8.xml": "xml.encoding",
        // Declared ISO-8859-1: refused rather than read as UTF-8 against its own declaration.
        "12a-decl-latin1-content-utf8.xml": "xml.encoding",
        "12b-decl-utf8-content-latin1.xml": "xml.encoding",
        "12c-utf7-smuggled-doctype.xml": "xml.encoding",
        "12d-ebcdic.xml": "xml.encoding",
        "13a-nul-in-text.xml": "xml.encoding",
        "13b-nul-charref.xml": "xml.encoding",
        "13c-bad-charrefs.xml": "xml.encoding",
        "13d-c0-control-chars.xml": "xml.encoding",
        "14a-truncated.xml": "xml.truncated",
        "14b-empty.xml": "xml.empty",
        "14c-whitespace-only.xml": "xml.empty",
        "15-multiple-roots.xml": "xml.not-well-formed",
        "16a-bom-then-whitespace-then-decl.xml": "xml.not-well-formed",
        "16b-whitespace-before-decl.xml": "xml.not-well-formed",
        "16c-double-bom.xml": "xml.encoding",
        "16d-bom-no-decl.xml": nil,
        "17a-pi-before-decl.xml": "xml.not-well-formed",
        "17b-comment-and-pi-everywhere.xml": nil,
        "17c-comment-double-dash.xml": "xml.not-well-formed",
        "17d-pi-target-xml-case.xml": "xml.not-well-formed",
        "17e-xml-version-2.xml": "xml.not-well-formed",
        "18a-cdata-end-in-text.xml": "xml.not-well-formed",
        "18b-cdata-split-terminator.xml": "schema.element.undeclared",
        "18c-cdata-in-attribute.xml": "xml.not-well-formed",
        "18d-cdata-unterminated.xml": "xml.truncated",
        "18e-cdata-markup-in-field.xml": nil,
        // Routing keys are loose strings in test.xsd: schema-valid; routing must refuse them (issue 3).
        "19a-routing-key-traversal.xml": nil, "19b-routing-key-traversal.xml": nil,
        "19c-routing-key-traversal.xml": nil, "19d-routing-key-traversal.xml": nil,
        "19e-routing-key-traversal.xml": nil, "19f-routing-key-traversal.xml": nil,
        "19g-routing-key-traversal.xml": nil, "19h-routing-key-traversal.xml": nil,
        "19i-routing-key-traversal.xml": nil, "19j-routing-key-traversal.xml": nil,
        "20a-date-year-overflow.xml": "schema.value.type",
        "20b-date-feb-30.xml": "schema.value.type",
        "20c-date-year-zero.xml": "schema.value.type",
        "20d-date-negative-year.xml": nil,
        "20e-date-timezone-out-of-range.xml": "schema.value.type",
        "20f-decimal-huge.xml": "schema.value.type",
        "20g-decimal-exponent.xml": "schema.value.type",
        "20h-decimal-negative-zero.xml": nil,
        "20i-year-2038-boundary.xml": nil,
        "20j-date-year-int32-overflow.xml": nil,
        "20k-date-year-17-digits.xml": nil,
        "20l-decimal-24-digits.xml": nil,
        "20m-date-with-timezone.xml": nil,
        "21a-xsi-type-anytype.xml": "schema.type",
        "21b-xsi-nil-required.xml": "schema.nil",
        "21c-wrong-namespace.xml": "schema.element.undeclared",
        "21d-unknown-extra-element.xml": "schema.element.unexpected",
        "21e-gzip-wrapped-valid.xml.gz": "input.compressed",
        "22a-name-nfd-decomposed.xml": nil,
        "22b-name-outside-din91379.xml": nil,
    ]

    /// `small` for the libxml2 release the process runs with (`Validator.libxml2Version`). A few verdicts are
    /// libxml2's own and changed between releases; each is pinned per release here, never left open (see
    /// Docs/design.md, "libxml2 releases"):
    /// - 20f (a 400-digit xs:decimal): 2.9 and 2.12 refuse decimals of more than 24 digits, 2.13 and later accept
    ///   any length, as XSD allows.
    public static func small(libxml2 version: String) -> [String: String?] {
        var table = small
        let parts = version.split(separator: ".").compactMap { Int($0) }
        let atLeast2_13 = parts.count >= 2 && (parts[0], parts[1]) >= (2, 13)
        if atLeast2_13 { table["20f-decimal-huge.xml"] = .some(nil) }
        return table
    }

    public static let big: [String: String?] = [
        "B01-quadratic-blowup-2.5GB.xml": "input.doctype-forbidden",
        "B02-deep-nesting-1e5.xml": "input.too-deep",
        "B02-deep-nesting-1e6.xml": "input.too-deep",
        "B03-deep-nesting-1e4.xml": "input.too-deep",
        "B04-many-attributes-1e5.xml": "input.too-many-attributes",
        "B05-many-attributes-1e4.xml": "input.too-many-attributes",
        "B06-long-name-60k.xml": "xml.not-well-formed",
        "B07-long-name-40k.xml": "schema.element.undeclared",
        "B08-namespace-bomb-1e5-decls.xml": "input.too-many-attributes",
        "B09-namespace-bomb-nested.xml": "input.too-deep",
        "B10-wide-1e6-siblings.xml": "schema.element.undeclared",
        "B11-attr-value-20MB.xml": "input.text-too-long",
        "B12-text-20MB.xml": "input.text-too-long",
        "B13-comment-20MB.xml": "input.text-too-long",
        "B14-many-entity-decls-1e5.xml": "input.doctype-forbidden",
        "B15-gzip-bomb-200MB.xml.gz": "input.compressed",
        "B16-idc-unique-50k.xml": nil,
        "B17-text-500MB.xml": "input.text-too-long",
        "B18-max-valid-10MiB.xml": nil,
    ]
}

/// The large hostile inputs, made once per test process by `gen_bad_inputs.py big --skip-500mb` (about 90 MB,
/// 5 s) into a temporary folder removed at exit. The 500 MB text node is streamed by its own test instead.
public enum GeneratedBadInputs {
    /// The folder, or `nil` when the catalogue is missing or the generator failed.
    public static let directory: URL? = {
        guard let badInputs = TestEnvironment.badInputs, let directory = try? TestEnvironment.temporaryDirectory() else {
            return nil
        }
        let generator = Process()
        generator.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        generator.arguments = ["python3", badInputs.appendingPathComponent("gen_bad_inputs.py").path,
                               "big", directory.path, "--skip-500mb"]
        generator.standardOutput = FileHandle.nullDevice
        do { try ProcessStart.serialized { try generator.run() } } catch { return nil }
        generator.waitUntilExit()
        removeAtExit = directory.path
        atexit { if let path = GeneratedBadInputs.removeAtExit { try? FileManager.default.removeItem(atPath: path) } }
        return generator.terminationStatus == 0 ? directory : nil
    }()

    nonisolated(unsafe) static var removeAtExit: String?
}
