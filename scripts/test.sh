#!/usr/bin/env bash
# The one test command: lints, then every test of the workspace.
# It installs what it needs on a fresh machine: the Rust toolchain's own
# components and OpenSSL's headers (for SQLCipher) here, kotlinc and JNA in
# scripts/test-kotlin.sh (once, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== fieldsync-core on SQLCipher (feature encryption: the whole core suite, with the encryption tests)"
# SQLCipher's crypto comes from the system's OpenSSL here: its headers are needed to build.
if ! dpkg -s libssl-dev >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq libssl-dev >/dev/null
fi
cargo clippy -p fieldsync-core --features encryption --all-targets -- -D warnings
cargo test -p fieldsync-core --features encryption
echo "== Swift bindings (generated header checked; the Swift tests run on macOS only)"
scripts/check-swift.sh
echo "== Kotlin bindings on the JVM"
scripts/test-kotlin.sh
