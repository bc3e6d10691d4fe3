#!/usr/bin/env bash
# The Kotlin package's tests on a plain JVM, against the host-built library.
#
# Installs what it needs once (kotlinc from npm, JNA from Debian's packages,
# into $FIELDSYNC_TOOLS, default ~/.cache/fieldsync-tools), then: builds
# `fieldsync-ffi` alone, generates the Kotlin bindings from the built library
# into target/bindings/kotlin (generated at build time, never committed, so
# they cannot be stale), compiles them with android/src/main and
# android/src/test, and runs the tests. The sync tests start the `fieldsync`
# binary (cli/, built here too) as a real server on loopback. The runner's
# last line is `N passed, N failed`; the script exits non-zero if any failed.
#
# Usage: scripts/test-kotlin.sh [test-name filter]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLS=${FIELDSYNC_TOOLS:-$HOME/.cache/fieldsync-tools}
KOTLIN_VERSION=2.4.20
JNA_VERSION=5.13.0
mkdir -p "$TOOLS"

# kotlinc (the npm package ships the compiler, the stdlib and kotlinx-coroutines).
KOTLIN_HOME=$TOOLS/node_modules/kotlin-compiler
if ! grep -qs "\"version\": \"$KOTLIN_VERSION\"" "$KOTLIN_HOME/package.json"; then
    echo "== installing kotlin-compiler@$KOTLIN_VERSION into $TOOLS"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS" "kotlin-compiler@$KOTLIN_VERSION"
fi
KOTLIN_LIB=$KOTLIN_HOME/lib

# JNA, which the generated bindings load the library with; its native part goes
# into a jar at the path JNA looks for it.
JNA_JAR=$TOOLS/jna/jna-$JNA_VERSION.jar
JNA_NATIVE_JAR=$TOOLS/jna/jnidispatch-linux-x86-64.jar
if [[ ! -f $JNA_JAR || ! -f $JNA_NATIVE_JAR ]]; then
    echo "== installing JNA $JNA_VERSION (Debian's libjna-java, libjna-jni) into $TOOLS/jna"
    rm -rf "$TOOLS/jna" && mkdir -p "$TOOLS/jna/deb" "$TOOLS/jna/native/com/sun/jna/linux-x86-64"
    (cd "$TOOLS/jna/deb" && { apt-get download libjna-java libjna-jni >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get download libjna-java libjna-jni; }; })
    for deb in "$TOOLS"/jna/deb/*.deb; do dpkg-deb -x "$deb" "$TOOLS/jna/root"; done
    cp "$(find "$TOOLS/jna/root" -name "jna-$JNA_VERSION.jar" | head -1)" "$JNA_JAR"
    cp "$(find "$TOOLS/jna/root" -name 'libjnidispatch*.so' | head -1)" \
        "$TOOLS/jna/native/com/sun/jna/linux-x86-64/libjnidispatch.so"
    (cd "$TOOLS/jna/native" && jar cf "$JNA_NATIVE_JAR" com)
fi

# The library alone: a workspace-wide build would unify uniffi's `cli` feature into it.
echo "== cargo build -p fieldsync-ffi"
cargo build -q -p fieldsync-ffi
LIB=$TARGET/debug/libfieldsync_ffi.so
# The server the sync tests run against (`fieldsync serve`, `fieldsync admin`).
# scripts/test.sh passes the one `cargo test --workspace` just built, which
# saves a third build of the server's crates (time and CI disk).
if [[ -n ${FIELDSYNC_SERVER_BIN:-} && -x $FIELDSYNC_SERVER_BIN ]]; then
    SERVER_BIN=$FIELDSYNC_SERVER_BIN
    echo "== the server for the sync tests: $SERVER_BIN"
else
    echo "== cargo build -p fieldsync (the server for the sync tests)"
    cargo build -q -p fieldsync
    SERVER_BIN=$TARGET/debug/fieldsync
fi

OUT=$TARGET/kotlin
GEN=$TARGET/bindings/kotlin
rm -rf "$GEN" "$OUT" && mkdir -p "$GEN" "$OUT"
echo "== generating the Kotlin bindings from $LIB"
cargo run -q -p uniffi-bindgen -- generate --library "$LIB" --language kotlin --out-dir "$GEN" --no-format

CP=$KOTLIN_LIB/kotlin-stdlib.jar:$KOTLIN_LIB/kotlinx-coroutines-core-jvm.jar:$JNA_JAR
echo "== kotlinc"
"$KOTLIN_HOME/bin/kotlinc" -nowarn -jvm-target 17 -cp "$CP" -d "$OUT/classes" \
    "$GEN" android/src/main/kotlin android/src/test/kotlin 2>&1 | grep -v '^warning: unable to find kotlin-stdlib' || true
[[ -f $OUT/classes/dev/fieldsync/FieldSyncTestKt.class ]] || { echo "kotlinc failed" >&2; exit 1; }

# A private CA the library trusts (SSL_CERT_FILE: the trust store the built-in
# transport reads on Linux), a server certificate it signed for 127.0.0.1 (as
# PKCS#12, for the test's TLS relay), and one from a CA nobody trusts.
TLS=$OUT/tls
mkdir -p "$TLS"
tls_cert() { # name, CA name
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$TLS/$1.key" -out "$TLS/$1.csr" 2>/dev/null
    printf 'subjectAltName = IP:127.0.0.1, DNS:localhost\n' >"$TLS/san.ext"
    openssl x509 -req -in "$TLS/$1.csr" -CA "$TLS/$2.pem" -CAkey "$TLS/$2.key" -CAcreateserial -days 2 \
        -extfile "$TLS/san.ext" -out "$TLS/$1.pem" 2>/dev/null
    openssl pkcs12 -export -in "$TLS/$1.pem" -inkey "$TLS/$1.key" -passout pass:fieldsync -out "$TLS/$1.p12"
}
for ca in ca stranger-ca; do
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=FieldSync test $ca" \
        -keyout "$TLS/$ca.key" -out "$TLS/$ca.pem" 2>/dev/null
done
tls_cert server ca
tls_cert stranger stranger-ca

echo "== Kotlin tests (JVM $(java -version 2>&1 | head -1))"
SSL_CERT_FILE=$TLS/ca.pem java -Djna.library.path="$TARGET/debug" -Dfieldsync.bin="$SERVER_BIN" \
    -Dfieldsync.tls="$TLS" -cp "$OUT/classes:$CP:$JNA_NATIVE_JAR" \
    dev.fieldsync.FieldSyncTestKt "$@"
