// swift-tools-version:6.0
import PackageDescription

// AMTSBOTE_PACKAGE_SUBSET=validation: only the libxml2 layer and its tests (CXMLShim, XoevValidation and
// XoevValidationTests), without the ledger, the service and their packages. The sanitizer and libxml2-version runs
// (scripts/sanitize, scripts/test-libxml2) build this subset: what they check lives there, and a full build per
// run would cost minutes each on a clean clone.
let validationSubset = Context.environment["AMTSBOTE_PACKAGE_SUBSET"] == "validation"
let subsetTargets: Set<String> = ["CLibXML2", "CXMLShim", "XoevValidation", "AmtsboteTestSupport", "XoevValidationTests"]

var package = Package(
    name: "Amtsbote",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "XoevValidation", targets: ["XoevValidation"]),
        .library(name: "XoevRouting", targets: ["XoevRouting"]),
        .library(name: "Postfach", targets: ["Postfach"]),
        .library(name: "PostfachTesting", targets: ["PostfachTesting"]),
        .library(name: "PostfachHTTP", targets: ["PostfachHTTP"]),
        .library(name: "AmtsbotePipeline", targets: ["AmtsbotePipeline"]),
        .library(name: "AmtsbotePostgres", targets: ["AmtsbotePostgres"]),
        .library(name: "LedgerTesting", targets: ["LedgerTesting"]),
        .library(name: "XoevReports", targets: ["XoevReports"]),
        .library(name: "AmtsboteService", targets: ["AmtsboteService"]),
        .executable(name: "amtsbote", targets: ["amtsbote"]),
        .executable(name: "amtsbote-testserver", targets: ["amtsbote-testserver"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.20.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.30.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.3.0"),
    ],
    targets: [
        // libxml2 as found by pkg-config; Debian: libxml2-dev.
        .systemLibrary(
            name: "CLibXML2",
            pkgConfig: "libxml-2.0",
            providers: [.apt(["libxml2-dev"])]
        ),
        // The only code that includes libxml2 headers. Its public header exposes opaque handles and plain C
        // functions, so Foundation's ICU never meets libxml2's (see Docs/design.md).
        .target(
            name: "CXMLShim",
            dependencies: ["CLibXML2"]
        ),
        // libxslt as found by pkg-config; Debian: libxslt1-dev.
        .systemLibrary(
            name: "CLibXSLT",
            pkgConfig: "libxslt",
            providers: [.apt(["libxslt1-dev"])]
        ),
        // The only code that includes libxslt headers: sandboxed XSLT 1.0 behind opaque handles (CXSLTShim.h).
        .target(
            name: "CXSLTShim",
            dependencies: ["CLibXSLT", "CLibXML2", "CXMLShim"]
        ),
        // XSLT transformations of validated payloads: compiled stylesheets, parameters, limits, stable codes.
        .target(
            name: "XoevTransform",
            dependencies: ["CXSLTShim", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Streaming XSD validation: schema sets, compiled schemas, diagnostics, limits.
        .target(
            name: "XoevValidation",
            dependencies: ["CXMLShim"]
        ),
        // Routing keys (AGS, ARS, Leistungsschlüssel, Behördenkennung), municipality list, dated routing tables.
        .target(name: "XoevRouting"),
        // The PostfachBackend protocol, deliveries and receipts, filesystem and in-memory backends, the registry.
        .target(name: "Postfach"),
        // The conformance suite every backend must pass (Swift Testing checks, callable from any test target).
        .target(
            name: "PostfachTesting",
            dependencies: ["Postfach", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // JSON Web Encryption and Signatures (RSA-OAEP-256/A256GCM, PS512) for FIT-Connect, on swift-crypto.
        .target(
            name: "JOSE",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // The http backend: deliveries over HTTP (AsyncHTTPClient), streamed, with idempotency key and digest.
        .target(
            name: "PostfachHTTP",
            dependencies: [
                "Postfach",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // The fit-connect backend: FIT-Connect Submission API v1 (OAuth2, JWE, the submission's ids in the ledger).
        .target(
            name: "PostfachFITConnect",
            dependencies: [
                "Postfach", "JOSE",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // The local stand-in for network Postfächer (an HTTP receiver with fault injection), for users and tests.
        .target(
            name: "PostfachStandIn",
            dependencies: [
                "Postfach", "JOSE",
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "amtsbote-testserver",
            dependencies: [
                "PostfachStandIn",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Reports of validation outcomes: text, JSON Lines, JUnit XML, SARIF 2.1.0, the HTML page.
        .target(name: "XoevReports", dependencies: ["XoevValidation"]),
        // validate -> route -> deliver, the ledger (SQLite via GRDB), the spool, retries.
        .target(
            name: "AmtsbotePipeline",
            dependencies: [
                "XoevValidation", "XoevRouting", "Postfach", "XoevTransform",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The ledger and the payload store on PostgreSQL (postgres-nio), shared by processes on many machines.
        .target(
            name: "AmtsbotePostgres",
            dependencies: [
                "AmtsbotePipeline", "Postfach",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The conformance suite every ledger engine must pass (Swift Testing checks, callable from any test target).
        .target(
            name: "LedgerTesting",
            dependencies: ["AmtsbotePipeline", "Postfach", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // `amtsbote serve`: the HTTP intake service (Hummingbird 2) in front of the pipeline, its authentication,
        // limits, idempotency keys, problem details and metrics (swift-metrics, Prometheus text).
        .target(
            name: "AmtsboteService",
            dependencies: [
                "AmtsbotePipeline", "Postfach", "XoevReports", "XoevValidation",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The command-line tool: flags -> configuration -> validation -> output and exit code.
        .executableTarget(
            name: "amtsbote",
            dependencies: [
                "XoevValidation",
                "XoevTransform",
                "XoevRouting",
                "Postfach",
                "AmtsbotePipeline",
                "AmtsbotePostgres",
                "XoevReports",
                "AmtsboteService",
                "PostfachHTTP",
                "PostfachFITConnect",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The delivery queue under load (scripts/bench-queue); not a product.
        .executableTarget(
            name: "amtsbote-queue-bench",
            dependencies: ["AmtsbotePipeline", "AmtsbotePostgres", "Postfach", "XoevRouting", "XoevValidation",
                           .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/QueueBench"
        ),
        // Shared by the test targets: where the corpus and the bad inputs are, the loopback canary, the test
        // PostgreSQL cluster's address.
        .target(name: "AmtsboteTestSupport", path: "Tests/AmtsboteTestSupport"),
        // A fresh database per test on the test cluster.
        .target(
            name: "PostgresTestSupport",
            dependencies: ["AmtsboteTestSupport", "AmtsbotePipeline", "AmtsbotePostgres", "Postfach",
                           .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "Logging", package: "swift-log")],
            path: "Tests/PostgresTestSupport"
        ),
        .testTarget(
            name: "XoevValidationTests",
            dependencies: ["XoevValidation", "CXMLShim", "AmtsboteTestSupport"],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "XoevTransformTests",
            dependencies: ["XoevTransform", "XoevValidation", "AmtsboteTestSupport"]
        ),
        .testTarget(
            name: "XoevReportsTests",
            dependencies: ["XoevReports", "XoevValidation", "AmtsboteTestSupport"]
        ),
        .testTarget(
            name: "XoevRoutingTests",
            dependencies: ["XoevRouting", "AmtsboteTestSupport"]
        ),
        .testTarget(
            name: "PostfachTests",
            dependencies: ["Postfach", "PostfachTesting", "AmtsboteTestSupport"]
        ),
        .testTarget(
            name: "JOSETests",
            dependencies: ["JOSE", .product(name: "CryptoExtras", package: "swift-crypto")]
        ),
        .testTarget(
            name: "PostfachHTTPTests",
            dependencies: ["PostfachHTTP", "PostfachStandIn", "PostfachTesting", "Postfach", "AmtsbotePipeline",
                           "XoevRouting", "XoevValidation", "AmtsboteTestSupport", "JOSE",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "X509", package: "swift-certificates"),
                           .product(name: "SwiftASN1", package: "swift-asn1"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "AmtsbotePipelineTests",
            dependencies: ["AmtsbotePipeline", "AmtsbotePostgres", "LedgerTesting", "Postfach", "XoevValidation",
                           "XoevRouting", "AmtsboteTestSupport", "PostgresTestSupport", "PostfachHTTP", "PostfachStandIn",
                           "PostfachFITConnect", "JOSE", .product(name: "X509", package: "swift-certificates"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client")]
        ),
        .testTarget(
            name: "AmtsboteServiceTests",
            dependencies: ["AmtsboteService", "AmtsbotePipeline", "AmtsbotePostgres", "AmtsboteTestSupport",
                           "PostgresTestSupport", "Postfach", "XoevRouting", "XoevValidation",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"),
                           .product(name: "X509", package: "swift-certificates"),
                           .product(name: "SwiftASN1", package: "swift-asn1"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]
        ),
        .testTarget(
            name: "AmtsboteCLITests",
            dependencies: ["amtsbote", "amtsbote-testserver", "XoevValidation", "AmtsbotePipeline", "AmtsbotePostgres", "AmtsboteTestSupport",
                           "PostgresTestSupport", .product(name: "Crypto", package: "swift-crypto")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

if validationSubset {
    package.targets = package.targets.filter { subsetTargets.contains($0.name) }
    package.products = package.products.filter { $0.name == "XoevValidation" }
    package.dependencies = []
}
