#!/usr/bin/env bash
# What of the Swift package can be checked without a Swift toolchain: generate
# the Swift bindings from the host-built library (as ios/build-xcframework.sh
# does on macOS), syntax-check the generated C header with gcc (clang's
# nullability qualifiers defined away, the header included twice), and check
# that every function the header declares is exported by the library.
# The Swift tests themselves run on macOS only (ios/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

# The library alone: a workspace-wide build would unify uniffi's `cli` feature into it.
cargo build -q -p fieldsync-ffi
LIB=$TARGET/debug/libfieldsync_ffi.so
GEN=$TARGET/bindings/swift
rm -rf "$GEN" && mkdir -p "$GEN"
echo "== generating the Swift bindings from $LIB"
cargo run -q -p uniffi-bindgen -- generate --library "$LIB" --language swift --out-dir "$GEN" --no-format
for f in FieldSync.swift FieldSyncFFI.h FieldSyncFFI.modulemap; do
    [[ -s $GEN/$f ]] || { echo "missing generated $f" >&2; exit 1; }
done
grep -q 'module FieldSyncFFI' "$GEN/FieldSyncFFI.modulemap" || { echo "module map does not name FieldSyncFFI" >&2; exit 1; }

echo "== gcc -fsyntax-only FieldSyncFFI.h"
printf '#include "FieldSyncFFI.h"\n#include "FieldSyncFFI.h"\nint main(void) { RustCallStatus s = {0}; (void)s; return 0; }\n' \
    > "$GEN/check_header.c"
gcc -fsyntax-only -std=c11 -Wall -Wextra -Werror -D_Nullable= -D_Nonnull= -I "$GEN" "$GEN/check_header.c"

echo "== every declared function is exported"
declared=$(grep -oE '\b(uniffi|ffi)_fieldsync_ffi_[a-z0-9_]+\(' "$GEN/FieldSyncFFI.h" | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$LIB" | awk '{print $3}' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
if [[ -n $missing ]]; then
    echo "declared in the header but not exported by the library:" >&2
    echo "$missing" >&2
    exit 1
fi
echo "swift check: $(echo "$declared" | wc -l) functions declared and exported; header compiles"
