#!/usr/bin/env bash
# The one test command: lints, then every test of the workspace.
# It installs what it needs on a fresh machine (only the Rust toolchain's own
# components today; the Kotlin and simulated-network suites add theirs here).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
