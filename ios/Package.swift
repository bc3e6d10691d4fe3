// swift-tools-version:5.9
// FieldSync for iOS (and macOS, where the tests run). Before building, run
// `./build-xcframework.sh` (macOS with Xcode and rustup): it builds the Rust
// library for device, simulator and macOS into Frameworks/FieldSyncFFI.xcframework
// and generates Sources/FieldSync/Generated/FieldSync.swift. Neither is committed.
import PackageDescription

let package = Package(
    name: "FieldSync",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "FieldSync", targets: ["FieldSync"]),
    ],
    targets: [
        // The Rust library (static, per platform) with its C header and module map.
        .binaryTarget(name: "FieldSyncFFI", path: "Frameworks/FieldSyncFFI.xcframework"),
        // The generated bindings (Generated/) and the idiomatic layer beside them.
        .target(
            name: "FieldSync",
            dependencies: ["FieldSyncFFI"],
            path: "Sources/FieldSync",
            linkerSettings: [
                // rustls-platform-verifier checks server certificates against the system's trust store.
                .linkedFramework("Security"),
            ]
        ),
        .testTarget(name: "FieldSyncTests", dependencies: ["FieldSync"], path: "Tests/FieldSyncTests"),
    ],
    swiftLanguageVersions: [.v5]
)
