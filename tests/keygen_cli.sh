#!/usr/bin/env bash
# keygen_cli.sh — concord-keygen end to end: a new identity's files (key mode 0600 even
# under umask 000), its stdout as a loadable enrolment snippet, --show of both files
# agreeing with it, and the exit codes of refusals: an existing key without --force (1),
# a group-readable key (1, naming the chmod), a malformed key file (1, with file:line),
# bad usage and invalid ids (2).
#
# Usage: bash tests/keygen_cli.sh BUILD_DIR SOURCE_DIR   (as CMake's ctest runs it)
set -u
BUILD=${1:?usage: keygen_cli.sh BUILD_DIR SOURCE_DIR}
BIN="$BUILD/concord-keygen"
T=$(mktemp -d /tmp/keygen_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$BIN" ] || fail "$BIN not built"

run() {
    local want=$1 got
    shift
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    [ "$got" -eq "$want" ] || { cat "$T/out" "$T/err" >&2; fail "exit $got, want $want: $*"; }
}
has() { grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "$1 lacks '$2'"; }; }

run 0 "$BIN" --help
has "$T/out" "Usage: concord-keygen"
run 0 "$BIN" --version
has "$T/out" "concord-keygen "

# A new identity, in a directory keygen creates, with a permissive umask.
( umask 000; "$BIN" --id hospital-a --out "$T/keys" >"$T/gen" 2>"$T/err" ) || fail "keygen failed"
[ "$(stat -c %a "$T/keys/hospital-a.key")" = 600 ] || fail "key mode $(stat -c %a "$T/keys/hospital-a.key")"
[ "$(stat -c %a "$T/keys")" = 700 ] || fail "dir mode $(stat -c %a "$T/keys")"
[ -f "$T/keys/hospital-a.pub" ] || fail "no .pub"
line=$(head -1 "$T/gen")
id=${line%% *}
hex=${line#* }
[ "$id" = hospital-a ] || fail "enrolment line '$line'"
[[ "$hex" =~ ^[0-9a-f]{64}$ ]] || fail "public hex '$hex'"
curve=$(sed -n 's/^# curve-public: //p' "$T/gen")
[ ${#curve} -eq 40 ] || fail "curve key '$curve'"
if grep -q "$(sed -n 's/^secret: //p' "$T/keys/hospital-a.key" | cut -c1-64)" "$T/gen"; then
    fail "the secret leaked to stdout"
fi

# --show of both files agrees with what generation printed.
for f in hospital-a.key hospital-a.pub; do
    run 0 "$BIN" --show "$T/keys/$f"
    has "$T/out" "id: hospital-a"
    has "$T/out" "public: $hex"
    has "$T/out" "curve-public: $curve"
done

# Refusals.
run 1 "$BIN" --id hospital-a --out "$T/keys"
has "$T/err" "already exists"
run 0 "$BIN" --id hospital-a --out "$T/keys" --force
[ "$(head -1 "$T/out")" != "$line" ] || fail "--force did not make a new key"
chmod 640 "$T/keys/hospital-a.key"
run 1 "$BIN" --show "$T/keys/hospital-a.key"
has "$T/err" "chmod 600"
printf 'concord-secret-key v1\nid: x\nsecret: 12zz\n' >"$T/bad.key"
chmod 600 "$T/bad.key"
run 1 "$BIN" --show "$T/bad.key"
has "$T/err" "bad.key:3:"
run 1 "$BIN" --show "$T/missing.key"
run 2 "$BIN" --id "bad id"
run 2 "$BIN" --id "../x"
run 2 "$BIN"
run 2 "$BIN" --bogus
run 2 "$BIN" --id a --show "$T/bad.key"
run 2 "$BIN" --id a extra
echo "keygen_cli: ok"
