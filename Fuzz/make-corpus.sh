#!/usr/bin/env bash
# Regenerates the seed corpora, Fuzz/Corpus/<target>/seed-*: packs, indexes, deltas,
# objects and refs written by git itself from a small repository with fixed dates (so the
# seeds are reproducible), config files, and, through the test suite, protocol messages,
# handshakes and control lines made by the real encoders with the harnesses' fixed keys.
# Other files in Fuzz/Corpus are inputs the fuzzer found (libFuzzer names them by hash).
#
# Usage: Fuzz/make-corpus.sh        (needs git and python3; builds the tests once)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
C=$ROOT/Fuzz/Corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
targets="wire-message wire-frames noise-handshake session-stream pack-indexer pack-reader delta object-checker refs config json control-codec trust quic"
for t in $targets; do mkdir -p "$C/$t" && rm -f "$C/$t"/seed-*; done

export GIT_AUTHOR_NAME=Fuzz GIT_AUTHOR_EMAIL=fuzz@example.com GIT_COMMITTER_NAME=Fuzz GIT_COMMITTER_EMAIL=fuzz@example.com
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
commit() {  # commit <unix time> <message>
  GIT_AUTHOR_DATE="$1 +0000" GIT_COMMITTER_DATE="$1 +0000" git commit -q -m "$2"
}

repo=$work/repo
git init -q -b main "$repo"
cd "$repo"
# The first commit is exactly the thin-pack base the harness offers (Fuzz/Support/GitSupport.swift).
for i in $(seq 1 40); do echo "line $i"; done >file.txt
git add file.txt
commit 1700000000 base
base=$(git rev-parse HEAD)
sed -i 's/^line 20$/line twenty/' file.txt
mkdir dir
printf 'nested\n' >dir/a.txt
git add -A
commit 1700000100 second
GIT_COMMITTER_DATE="1700000150 +0000" git tag -a v1 -m "release 1"
git checkout -q -b side "$base"
sed -i 's/^line 3$/line three/' file.txt
git add -A
commit 1700000200 side
git checkout -q main
GIT_AUTHOR_DATE="1700000300 +0000" GIT_COMMITTER_DATE="1700000300 +0000" git merge -q --no-edit side
ln -s file.txt link
chmod +x dir/a.txt
git add -A
commit 1700000400 "mode and link"

strip_trailer() { head -c -20; }

# pack-indexer: flags byte, then the pack (the harness appends the trailer unless flag 1).
packs=$work/packs
mkdir "$packs"
git rev-list --objects --all | cut -d' ' -f1 >"$work/all"
git pack-objects -q --delta-base-offset --stdout <"$work/all" >"$packs/ofs.pack"
git pack-objects -q --stdout <"$work/all" >"$packs/ref.pack"
printf '%s\n^%s\n' main "$base" | git pack-objects -q --revs --thin --stdout >"$packs/thin.pack"
{ printf '\000'; strip_trailer <"$packs/ofs.pack"; } >"$C/pack-indexer/seed-ofs-delta"
{ printf '\000'; strip_trailer <"$packs/ref.pack"; } >"$C/pack-indexer/seed-ref-delta"
{ printf '\002'; strip_trailer <"$packs/thin.pack"; } >"$C/pack-indexer/seed-thin"
{ printf '\001'; cat "$packs/ofs.pack"; } >"$C/pack-indexer/seed-with-trailer"

# pack-reader: flags, index length (u16) and index, then the pack with its trailer.
git repack -adq
pack=$(ls .git/objects/pack/*.pack)
idx=${pack%.pack}.idx
for flags in 0 4 12; do
  python3 - "$idx" "$pack" "$flags" >"$C/pack-reader/seed-flags-$flags" <<'PY'
import sys
idx = open(sys.argv[1], 'rb').read(); pack = open(sys.argv[2], 'rb').read()
sys.stdout.buffer.write(bytes([int(sys.argv[3])]) + len(idx).to_bytes(2, 'big') + idx + pack)
PY
done

# delta: flags, base length (u16) and base, then git's delta instructions, for every
# delta in git's packs (bases read back with cat-file).
for p in "$packs/ofs.pack" "$packs/ref.pack"; do
  rm -f "$work"/tmp.*
  cp "$p" "$work/tmp.pack"
  git index-pack "$work/tmp.pack" >/dev/null
  python3 - "$p" "$work/tmp.idx" "$C/delta" "$(basename "$p" .pack)" <<'PY'
import subprocess, sys, zlib
pack = open(sys.argv[1], 'rb').read()
out, tag = sys.argv[3], sys.argv[4]
ids = {}
for line in subprocess.check_output(['git', 'verify-pack', '-v', sys.argv[2]]).decode().splitlines():
    f = line.split()
    if len(f) >= 5 and len(f[0]) == 40:
        ids[int(f[4])] = f[0]
count = int.from_bytes(pack[8:12], 'big')
off = 12
for n in range(count):
    c = pack[off]; i = off + 1; kind = (c >> 4) & 7
    while c & 0x80:
        c = pack[i]; i += 1
    base = None
    if kind == 6:
        c = pack[i]; i += 1; rel = c & 0x7f
        while c & 0x80:
            c = pack[i]; i += 1; rel = ((rel + 1) << 7) | (c & 0x7f)
        base = ids[off - rel]
    elif kind == 7:
        base = pack[i:i + 20].hex(); i += 20
    z = zlib.decompressobj(); data = z.decompress(pack[i:])
    if base is not None:
        t = subprocess.check_output(['git', 'cat-file', '-t', base]).decode().strip()
        body = subprocess.check_output(['git', 'cat-file', t, base])
        with open('%s/seed-%s-%d' % (out, tag, n), 'wb') as f:
            f.write(bytes([0]) + len(body).to_bytes(2, 'big') + body + data)
    off = len(pack) - len(z.unused_data)
PY
done

# object-checker: a type selector (0 blob, 1 tree, 2 commit, 3 tag; 4 loose object as
# the harness compresses it, 0x84 a loose file as is), then the content.
n=0
for id in $(cat "$work/all") $(git rev-parse v1); do
  t=$(git cat-file -t "$id")
  case $t in blob) s=0 ;; tree) s=1 ;; commit) s=2 ;; tag) s=3 ;; esac
  { printf "\\$(printf %o $s)"; git cat-file "$t" "$id"; } >"$C/object-checker/seed-$t-$n"
  n=$((n + 1))
done
{ printf '\004'; printf 'blob 6\000hello\n'; } >"$C/object-checker/seed-loose"
loose=$(git hash-object -w --stdin <<<"loose object")
{ printf '\204'; cat ".git/objects/${loose:0:2}/${loose:2}"; } >"$C/object-checker/seed-loose-file"

# refs: loose refs, a symbolic HEAD, packed-refs with a peeled tag.
cp .git/HEAD "$C/refs/seed-head"
cp .git/refs/heads/main "$C/refs/seed-loose"
git pack-refs --all
cp .git/packed-refs "$C/refs/seed-packed-refs"
printf 'ref: refs/heads/main\r\n' >"$C/refs/seed-crlf"

# config: guts-config(5) files.
cat >"$C/config/seed-full" <<'EOF'
# guts node configuration
listen = 127.0.0.1:9000
bootstrap = gtaaaa@127.0.0.1:9001
bootstrap = 127.0.0.1:9002
max-connections = 64
connect-timeout = 5
handshake-timeout = 2.5
keepalive-interval = 30
idle-timeout = 90
network = test-net
EOF
printf '\n  # comment\n\tlisten=[::1]:9000  \r\nnetwork =\n' >"$C/config/seed-spacing"
printf 'max-conections = 3\n' >"$C/config/seed-typo"

# The protocol seeds, from the encoders (the test writes them with GUTS_FUZZ_WRITE_SEEDS=1).
cd "$ROOT"
GUTS_FUZZ_WRITE_SEEDS=1 swift test --filter 'FuzzRegressionTests.FuzzRegressionTests/testProtocolSeedsAreCurrent'
for d in "$C"/*/; do echo "$(basename "$d"): $(ls "$d" | grep -c '^seed-') seeds"; done
