#!/usr/bin/env bash
# The one test command: lints, then every test of the workspace.
# It installs what it needs on a fresh machine: the Rust toolchain's own
# components and two Debian packages here, kotlinc and JNA in
# scripts/test-kotlin.sh (once, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true
# Debian packages the tests need: PostgreSQL's server (the hub's PostgreSQL
# tests start throwaway clusters with its initdb and pg_ctl), OpenSSL's
# headers (SQLCipher's crypto, for the encryption build of the core) and
# faketime (a device whose clock is days off).
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
# faketime: the CLI's trust tests run a device with its clock days ahead.
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
# mount: the CLI's disk_full test runs the server on a small tmpfs (as root, like this script).
command -v mount >/dev/null 2>&1 || missing+=(mount)
if ((${#missing[@]})); then
    echo "== installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Each phase says how long it took (a cold CI run must stay well under an hour).
started=$SECONDS
phase_start=$SECONDS
phase() {
    if [[ -n ${phase_name:-} ]]; then
        echo "-- ${phase_name}: $((SECONDS - phase_start)) s"
    fi
    phase_name=$1
    phase_start=$SECONDS
    echo "== $1"
}

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
phase "cargo test"
cargo test --workspace
phase "fieldsync-core on SQLCipher (feature encryption: the whole core suite, with the encryption tests)"
cargo clippy -p fieldsync-core --features encryption --all-targets -- -D warnings
cargo test -p fieldsync-core --features encryption
phase "Swift bindings (generated header checked; the Swift tests run on macOS only)"
scripts/check-swift.sh
phase "Kotlin bindings on the JVM"
echo "-- total before the Kotlin tests: $((SECONDS - started)) s (the runner's count below is the last line)"
# The `fieldsync` that `cargo test --workspace` built for the CLI's tests.
FIELDSYNC_SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/fieldsync" scripts/test-kotlin.sh
