#!/usr/bin/env bash
# Builds the libFuzzer targets of Fuzz/Targets into .build-fuzz/bin (see README.md, Fuzzing).
#
# SwiftPM cannot add -sanitize=fuzzer to some targets only, so this script compiles the
# modules the harnesses need straight from Sources/ with swiftc, instrumented for libFuzzer
# and AddressSanitizer, then links one binary per harness. Modules that also hold NIO shells
# are built from their pure files only (the codecs), under their real names, so a harness
# imports them exactly as the test suite does.
#
# Usage: Fuzz/build.sh [target...]     (default: every Fuzz/Targets/*.swift)
# Environment: FUZZ_OPT (default -O), SWIFTC (default swiftc).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/.build-fuzz
SWIFTC=${SWIFTC:-swiftc}
OPT=${FUZZ_OPT:--O}
mkdir -p "$OUT/modules" "$OUT/obj" "$OUT/bin"

FLAGS=(-swift-version 6 -parse-as-library -sanitize=fuzzer,address "$OPT" -g -enable-testing
       -I "$OUT/modules" -I Sources/CSodium -I Sources/CZlib -I Sources/CMalloc)

# module name, then its sources (a directory means every .swift file in it).
MODULES=(
  "GutsSupport Sources/GutsSupport"
  "GutsCrypto Sources/GutsCrypto"
  "GutsNoise Sources/GutsNoise"
  "GutsIdentity Sources/GutsIdentity"
  "GutsAddress Sources/GutsAddress"
  "GutsPolicy Sources/GutsPolicy"
  "GutsWire Sources/GutsWire"
  "GutsQUIC Sources/GutsQUIC/DER.swift Sources/GutsQUIC/Certificate.swift Sources/GutsQUIC/Framing.swift"
  "GutsDHT Sources/GutsDHT"
  "GutsGit Sources/GutsGit"
  "GutsTrust Sources/GutsTrust"
  "GutsGossip Sources/GutsGossip"
  "GutsSync Sources/GutsSync/SyncMessages.swift"
  "GutsNode Sources/GutsNode/Announcements.swift"
  "GutsControl Sources/GutsControl/ControlCodec.swift Sources/GutsControl/ControlTypes.swift"
  "GutsCLI Sources/GutsCLI/Config.swift Sources/GutsCLI/Command.swift Sources/GutsCLI/Arguments.swift Sources/GutsCLI/ExitCode.swift"
)

# In dependency order: once a module is rebuilt, every later one is rebuilt too.
rebuilt=0
for spec in "${MODULES[@]}"; do
  read -r name paths <<<"$spec"
  files=()
  for p in $paths; do
    if [ -d "$p" ]; then files+=("$p"/*.swift); else files+=("$p"); fi
  done
  obj=$OUT/obj/$name.o
  newest=$(ls -t "${files[@]}" "$0" | head -1)
  if [ $rebuilt -eq 0 ] && [ -f "$obj" ] && [ "$obj" -nt "$newest" ]; then continue; fi
  rebuilt=1
  echo "compiling $name (${#files[@]} files)" >&2
  "$SWIFTC" "${FLAGS[@]}" -wmo -module-name "$name" -emit-module -emit-module-path "$OUT/modules/$name.swiftmodule" \
    -c "${files[@]}" -o "$obj"
  touch "$obj"  # swiftc keeps the old time stamp when the object comes out identical
done

# One binary per harness: the shared support files, the harness, and a generated entry
# point that hands libFuzzer's bytes to the harness function (fuzz-name -> fuzzName).
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in Fuzz/Targets/*.swift; do targets+=("$(basename "$f" .swift)"); done
fi
objects=()
for spec in "${MODULES[@]}"; do read -r name _ <<<"$spec"; objects+=("$OUT/obj/$name.o"); done
for t in "${targets[@]}"; do
  src=Fuzz/Targets/$t.swift
  [ -f "$src" ] || { echo "no such target: $t (see Fuzz/Targets)" >&2; exit 2; }
  fn=fuzz$(echo "$t" | sed -E 's/(^|-)([a-z])/\U\2/g; s/Json/JSON/')
  entry=$OUT/entry-$t.swift
  cat >"$entry" <<SWIFT
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEntryPoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    $fn(data.map { Array(UnsafeBufferPointer(start: \$0, count: size)) } ?? [])
    return 0
}
SWIFT
  bin=$OUT/bin/$t
  newest=$(ls -t Fuzz/Support/*.swift "$src" "${objects[@]}" "$0" | head -1)
  if [ -f "$bin" ] && [ "$bin" -nt "$newest" ]; then continue; fi
  echo "linking $t" >&2
  "$SWIFTC" "${FLAGS[@]}" -use-ld=lld -module-name FuzzHarness Fuzz/Support/*.swift "$src" "$entry" "${objects[@]}" \
    -lsodium -lz -o "$bin"
  touch "$bin"
done
