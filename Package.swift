// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "virtmeter",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "virtmeter", targets: ["virtmeter"]),
        .library(name: "VirtMeterCore", targets: ["VirtMeterCore"]),
        .library(name: "VirtMeterLibvirt", targets: ["VirtMeterLibvirt"]),
        .library(name: "VirtMeterAMQP", targets: ["VirtMeterAMQP"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
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
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
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
        // The benchmark's floor: the inspector's libvirt calls made bare, in C.
        .target(name: "CLibvirtFloor", dependencies: ["CLibvirt"]),
        .executableTarget(
            name: "virtmeter",
            dependencies: [
                "VirtMeterCore", "VirtMeterLibvirt", "CLibvirt", "CLibvirtFloor", "VirtMeterAMQP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "VirtMeterCoreTests",
            dependencies: ["VirtMeterCore"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "VirtMeterLibvirtTests",
            dependencies: ["VirtMeterCore", "VirtMeterLibvirt", "CLibvirt", "virtmeter"]
        ),
        // Real guests under libvirtd's QEMU driver; needs the kit up: run scripts/test-guests.
        .testTarget(
            name: "VirtMeterGuestTests",
            dependencies: [
                "VirtMeterCore", "VirtMeterLibvirt",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "VirtMeterAMQPTests",
            dependencies: ["VirtMeterCore", "VirtMeterAMQP", "VirtMeterLibvirt", "virtmeter"]
        ),
    ]
)
