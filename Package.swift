// swift-tools-version:6.2
import PackageDescription

// Every target builds in Swift 6 language mode with strict concurrency.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "greptile-mcp",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "durable-host", targets: ["durable-host"]),
        .executable(name: "mcp-worker", targets: ["mcp-worker"]),
        .library(name: "SessionModel", targets: ["SessionModel"]),
        .library(name: "CurlHTTP", targets: ["CurlHTTP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: ["FullFoundation"]),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", from: "0.12.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["Reloading"]),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/pointfreeco/swift-clocks.git", from: "1.1.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        // OTLP over HTTP only: the gRPC exporter would build grpc-swift for nothing.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // MARK: Libraries, lowest first (docs/ARCHITECTURE.md)
        .target(name: "SessionModel", swiftSettings: strict),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "CurlHTTP", dependencies: ["CCurl"], swiftSettings: strict),
        .target(
            name: "Settings",
            dependencies: ["HashRing", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(name: "HashRing", swiftSettings: strict),
        .target(
            name: "ServerRuntime",
            dependencies: [
                .product(name: "Clocks", package: "swift-clocks"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "HTTPServing",
            dependencies: [
                "ServerRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ServiceMetrics",
            dependencies: [
                "ServerRuntime", "SessionModel",
                "CurlHTTP", "HTTPServing",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "HostLink",
            dependencies: [
                "CurlHTTP", "HashRing", "SessionModel", "ServiceMetrics", "ServerRuntime",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SessionClient",
            dependencies: [
                "ServerRuntime",
                "ServiceMetrics", "HostLink",
                "HashRing",
                "SessionModel", "CurlHTTP", "Settings",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Greptile",
            dependencies: [
                "ServerRuntime",
                "SessionModel", "CurlHTTP",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SignIn",
            dependencies: [
                "SessionModel", "SessionClient", "CurlHTTP", "ServerRuntime",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "MCPWorker",
            dependencies: [
                "ServerRuntime", "SignIn",
                "HashRing",
                .product(name: "Crypto", package: "swift-crypto"),
                "SessionModel", "SessionClient", "Greptile", "CurlHTTP", "Settings", "ServiceMetrics", "HTTPServing", "HostLink",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DurableHost",
            dependencies: [
                "ServerRuntime",
                "HashRing", "CurlHTTP", "HTTPServing", "HostLink",
                "SessionModel", "Settings", "ServiceMetrics",
                .product(name: "Clocks", package: "swift-clocks"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        .target(
            name: "DurableHostCommands",
            dependencies: [
                "DurableHost", "Settings", "SessionModel", "ServiceMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // MARK: Executables: configuration in, services out
        .executableTarget(
            name: "durable-host",
            dependencies: [
                "ServerRuntime",
                "DurableHost", "DurableHostCommands", "Settings", "SessionModel", "ServiceMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "mcp-worker",
            dependencies: [
                "ServerRuntime", "SignIn",
                "MCPWorker", "Greptile", "CurlHTTP", "SessionModel", "Settings", "ServiceMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // MARK: Benchmarks (bench/, results in BENCHMARKS.md)
        .executableTarget(name: "ring-lookup-bench", dependencies: ["HashRing"], path: "bench/RingLookup", swiftSettings: strict),
        .executableTarget(
            name: "http-floor-bench",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird"), .product(name: "Logging", package: "swift-log")],
            path: "bench/HTTPFloor", swiftSettings: strict),
        .executableTarget(
            name: "host-hop-bench",
            dependencies: [
                "CurlHTTP", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "bench/HostHop", swiftSettings: strict),

        // MARK: Tests
        // durable-host with commits held back, for the tests that need a write caught in flight.
        .executableTarget(
            name: "durable-host-testing",
            dependencies: [
                "DurableHost", "DurableHostCommands", "SessionModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/DurableHostTesting", swiftSettings: strict),
        .target(
            name: "TestSupport",
            dependencies: ["CurlHTTP", "SessionModel", "HashRing"],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(name: "SessionModelTests", dependencies: ["SessionModel"], swiftSettings: strict),
        .testTarget(
            name: "SignInTests",
            dependencies: ["SignIn", "SessionModel", .product(name: "JWTKit", package: "jwt-kit")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MCPWorkerTests",
            dependencies: [
                "ServerRuntime",
                "MCPWorker", "SessionClient", "SessionModel", "Greptile", "CurlHTTP", "ServiceMetrics", "HTTPServing", "HostLink", "HashRing", "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Clocks", package: "swift-clocks"),
                .product(name: "MCP", package: "swift-sdk"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "CurlHTTPTests", dependencies: ["CurlHTTP", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "DurableHostTests",
            dependencies: [
                "ServerRuntime",
                "DurableHost", "SessionModel", "TestSupport",
                .product(name: "Clocks", package: "swift-clocks"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HostProcessTests",
            dependencies: ["SessionModel", "CurlHTTP", "TestSupport", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strict
        ),
        .testTarget(name: "HashRingTests", dependencies: ["HashRing", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "DeployTests", dependencies: ["CurlHTTP", "TestSupport", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
        .testTarget(
            name: "SessionClientTests", dependencies: ["ServerRuntime", "SessionClient", "SessionModel", "HashRing", "CurlHTTP"], swiftSettings: strict),
        .testTarget(
            name: "WorkerProcessTests",
            dependencies: ["SessionModel", "CurlHTTP", "HashRing", "TestSupport", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
    ]
)
