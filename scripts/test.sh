#!/usr/bin/env bash
# The one test command: lints, then every test of the workspace.
# It installs what it needs on a fresh machine: the Rust toolchain's own
# components and two Debian packages here, kotlinc and JNA in
# scripts/test-kotlin.sh (once, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true
# Debian packages the tests need: PostgreSQL's server (the hub's PostgreSQL
# tests start throwaway clusters with its initdb and pg_ctl) and OpenSSL's
# headers (SQLCipher's crypto, for the encryption build of the core).
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
if ((${#missing[@]})); then
    echo "== installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== fieldsync-core on SQLCipher (feature encryption: the whole core suite, with the encryption tests)"
cargo clippy -p fieldsync-core --features encryption --all-targets -- -D warnings
cargo test -p fieldsync-core --features encryption
echo "== Swift bindings (generated header checked; the Swift tests run on macOS only)"
scripts/check-swift.sh
echo "== Kotlin bindings on the JVM"
scripts/test-kotlin.sh
