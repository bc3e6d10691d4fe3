#!/usr/bin/env bash
# Build FieldSyncFFI.xcframework (iOS device, iOS simulator, macOS) from the
# Rust library and generate the Swift bindings beside the idiomatic layer.
# Needs macOS with Xcode (xcodebuild, lipo) and rustup. Not run on Linux: no
# Apple SDK is reachable there (see README.md).
#
#   ./build-xcframework.sh            # the `mobile` profile: release with fat LTO
#   PROFILE=dev ./build-xcframework.sh
#   ENCRYPTION=1 ./build-xcframework.sh   # SQLCipher at rest (crypto from CommonCrypto)
set -euo pipefail
IOS=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$IOS/.." && pwd)
cd "$ROOT"

PROFILE=${PROFILE:-mobile}
DIR=$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
DEVICE=aarch64-apple-ios
SIMULATOR=(aarch64-apple-ios-sim x86_64-apple-ios)
MACOS=(aarch64-apple-darwin x86_64-apple-darwin)
export IPHONEOS_DEPLOYMENT_TARGET=15.0 MACOSX_DEPLOYMENT_TARGET=12.0

rustup target add "$DEVICE" "${SIMULATOR[@]}" "${MACOS[@]}"
# The library alone, one target at a time: a workspace-wide build would unify
# uniffi's `cli` feature (only uniffi-bindgen needs it) into the library.
for target in "$DEVICE" "${SIMULATOR[@]}" "${MACOS[@]}"; do
    cargo build -p fieldsync-ffi --profile "$PROFILE" --target "$target" ${ENCRYPTION:+--features encryption}
done
lib() { echo "$ROOT/target/$1/$DIR/libfieldsync_ffi.a"; }

WORK=$ROOT/target/xcframework
rm -rf "$WORK" && mkdir -p "$WORK/headers" "$WORK/simulator" "$WORK/macos"

# Bindings from the macOS library of this machine's architecture (the
# metadata is the same in every slice).
HOST_DYLIB=$ROOT/target/$(uname -m | sed 's/arm64/aarch64/')-apple-darwin/$DIR/libfieldsync_ffi.dylib
cargo run -q -p uniffi-bindgen -- generate --library "$HOST_DYLIB" --language swift --out-dir "$WORK/bindings"
cp "$WORK/bindings/FieldSyncFFI.h" "$WORK/headers/"
cp "$WORK/bindings/FieldSyncFFI.modulemap" "$WORK/headers/module.modulemap"

lipo -create "$(lib "${SIMULATOR[0]}")" "$(lib "${SIMULATOR[1]}")" -output "$WORK/simulator/libfieldsync_ffi.a"
lipo -create "$(lib "${MACOS[0]}")" "$(lib "${MACOS[1]}")" -output "$WORK/macos/libfieldsync_ffi.a"

rm -rf "$IOS/Frameworks/FieldSyncFFI.xcframework"
mkdir -p "$IOS/Frameworks"
xcodebuild -create-xcframework \
    -library "$(lib "$DEVICE")" -headers "$WORK/headers" \
    -library "$WORK/simulator/libfieldsync_ffi.a" -headers "$WORK/headers" \
    -library "$WORK/macos/libfieldsync_ffi.a" -headers "$WORK/headers" \
    -output "$IOS/Frameworks/FieldSyncFFI.xcframework"

mkdir -p "$IOS/Sources/FieldSync/Generated"
cp "$WORK/bindings/FieldSync.swift" "$IOS/Sources/FieldSync/Generated/FieldSync.swift"
echo "built $IOS/Frameworks/FieldSyncFFI.xcframework and Sources/FieldSync/Generated/FieldSync.swift"
echo "now: cd ios && swift test   (or add the package to an Xcode project)"
