// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "virtmeter",
    // Linux only (Glibc, libvirt, librabbitmq): no Apple platform is declared. An application: its one product is
    // the command; the modules are not a library for others.
    products: [
        .executable(name: "virtmeter", targets: ["virtmeter"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // Tests only: the test clock that drives the poll and publish services' time.
        .package(url: "https://github.com/pointfreeco/swift-clocks", from: "1.1.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibvirt",
            pkgConfig: "libvirt",
            providers: [.apt(["libvirt-dev"])]
        ),
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .target(
            name: "VirtMeterCore",
            dependencies: [
                "CChecksum", "CSHA256",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // SHA-256 with the CPU's SHA extensions, or AVX-512 for 16 messages at once: the sample signature (HMAC-SHA256)
        // and the SHA-224 host hash.
        .target(name: "CSHA256"),
        .target(
            name: "VirtMeterLibvirt",
            dependencies: [
                "VirtMeterCore", "CLibvirt",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "VirtMeterAMQP",
            dependencies: [
                "VirtMeterCore", "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The byte crunching Swift cannot vectorise, in C: the spool's record checksum (CRC-32C with the CPU's crc32
        // instruction) and the envelope's escape of a record's sample JSON (AVX-512 VBMI2 expands, or SSSE3 shuffles).
        .target(name: "CChecksum"),
        .target(
            name: "VirtMeterAgent",
            dependencies: [
                "VirtMeterCore", "CChecksum",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The opt-in Prometheus endpoint of `virtmeter run` (issue 12): /metrics and /healthz over HTTP or HTTPS.
        .target(
            name: "VirtMeterPrometheus",
            dependencies: [
                "VirtMeterCore", "VirtMeterAgent",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The benchmark's floor: the inspector's libvirt calls made bare, in C.
        .target(name: "CLibvirtFloor", dependencies: ["CLibvirt"]),
        .executableTarget(
            name: "virtmeter",
            dependencies: [
                "VirtMeterCore", "VirtMeterLibvirt", "CLibvirt", "CLibvirtFloor", "VirtMeterAMQP", "VirtMeterAgent",
                "VirtMeterPrometheus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What several test targets share: the wire-form oracle, record decoding, a log handler that keeps lines.
        .target(
            name: "VirtMeterTestSupport",
            dependencies: ["VirtMeterCore", .product(name: "Logging", package: "swift-log")],
            path: "Tests/VirtMeterTestSupport"
        ),
        .testTarget(
            name: "VirtMeterAgentTests",
            dependencies: [
                "VirtMeterCore", "VirtMeterAgent", "VirtMeterTestSupport", "CChecksum",
                .product(name: "Clocks", package: "swift-clocks"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "VirtMeterCoreTests",
            dependencies: [
                "VirtMeterCore", "VirtMeterTestSupport", "CChecksum",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            resources: [.copy("Fixtures")]
        ),
        // The `virtmeter` command as users run it (poll, check, run, meters), over libvirt's test driver.
        .testTarget(
            name: "VirtMeterCLITests",
            dependencies: ["VirtMeterCore", "VirtMeterAMQP", "VirtMeterTestSupport", "virtmeter"]
        ),
        .testTarget(
            name: "VirtMeterLibvirtTests",
            dependencies: [
                "VirtMeterCore", "VirtMeterLibvirt", "CLibvirt", "VirtMeterTestSupport", "virtmeter",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // Real guests under libvirtd's QEMU driver; needs the kit up: run scripts/test-guests.
        .testTarget(
            name: "VirtMeterGuestTests",
            dependencies: [
                "VirtMeterCore", "VirtMeterLibvirt", "VirtMeterAgent", "VirtMeterTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The Prometheus endpoint against a real Prometheus server and ceilometer's exporter: scripts/test-prometheus.
        .testTarget(
            name: "VirtMeterPrometheusTests",
            dependencies: [
                "VirtMeterCore", "VirtMeterAgent", "VirtMeterLibvirt", "VirtMeterPrometheus", "VirtMeterTestSupport",
                "virtmeter",
            ]
        ),
        .testTarget(
            name: "VirtMeterAMQPTests",
            dependencies: ["VirtMeterCore", "VirtMeterAMQP", "VirtMeterLibvirt", "VirtMeterTestSupport", "virtmeter"]
        ),
    ]
)

// The project's own code builds without a warning: every warning is an error (dependencies are not affected).
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [.treatAllWarnings(as: .error)]
    target.cSettings = (target.cSettings ?? []) + [.enableWarning("all"), .treatAllWarnings(as: .error)]
}
