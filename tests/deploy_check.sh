#!/usr/bin/env bash
# Deployment files stay consistent with the daemons (DESIGN §8):
#  1. deploy/docker-compose.yml passes `docker-compose config` (SKIP when docker-compose is
#     not installed; deploy/install-deps.sh installs it);
#  2. every example INI (deploy/*.ini, deploy/compose/*.ini) parses with Python's
#     configparser (strict: no duplicate sections or keys) and uses only the sections and
#     keys of its daemon — the lists below are the documented interface
#     (docs/configuration.md); the compose hospitals' configs must name their own key;
#  3. when the daemons are built, each loads its examples (`--print-config`, which rejects
#     unknown keys), and loads its own printed output again (round trip);
#  4. the systemd units pass `systemd-analyze verify` (SKIP when it is missing), with
#     ExecStart pointed at /bin/true since the binaries are not installed here.
# Usage: bash tests/deploy_check.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
deploy=$src/deploy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
py=/usr/bin/python3
[ -x "$py" ] || py=python3

# ---- 1. docker-compose ----------------------------------------------------------------------
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f "$deploy/docker-compose.yml" config -q || fail "docker-compose config rejects deploy/docker-compose.yml"
  services=$(docker-compose -f "$deploy/docker-compose.yml" config --services | sort | tr '\n' ' ')
  for s in coordinator hospital1 hospital2 hospital3 hospital4; do
    case " $services " in *" $s "*) ;; *) fail "docker-compose.yml has no service $s (has: $services)";; esac
  done
  echo "docker-compose config: ok ($services)"
else
  echo "SKIP: docker-compose is not installed (deploy/install-deps.sh installs it); compose file not validated"
fi

# ---- 2. example INI files ---------------------------------------------------------------------
"$py" - "$deploy" <<'PY'
import configparser, glob, os, sys

deploy = sys.argv[1]
COORDINATOR = {
    "federation": ["rounds", "min_clients", "quorum", "join_timeout_s", "round_deadline_s",
                   "extension_s", "seed", "bind", "enrolment", "upload_window_mb", "upload_grant_s"],
    # inputs, classes, image: the model's shape, declared by concord-coordinator too.
    "model": ["arch", "activation", "dropout", "standardize", "inputs", "classes", "image"],
    "training": ["epochs", "batch", "optimizer", "lr", "momentum", "weight_decay"],
    "aggregation": ["server_lr", "max_update_norm", "weighting"],
    "security": ["identity", "curve"],
    "storage": ["state_dir", "keep_checkpoints", "export"],
    "metrics": ["http_bind", "history", "test_data", "test_labels"],
}
CLIENT = {
    "client": ["id", "data", "labels", "test_data", "test_labels", "val_frac", "state_dir",
               "label_column"],
    "coordinator": ["endpoint", "public_key"],
    "security": ["identity", "curve"],
    "training": ["threads"],
    "network": ["heartbeat_s", "reconnect_min_ms", "reconnect_max_ms"],
}
# Keys an example must set (the daemon cannot start without them).
REQUIRED = {
    "coordinator": {"federation": ["enrolment", "bind"], "security": ["identity"],
                    "storage": ["state_dir"], "model": ["arch", "inputs", "classes"]},
    "client": {"client": ["id", "data", "state_dir"], "coordinator": ["endpoint", "public_key"],
               "security": ["identity"]},
}

def check(path, role):
    known = COORDINATOR if role == "coordinator" else CLIENT
    cp = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False,
                                   comment_prefixes=("#", ";"), inline_comment_prefixes=None)
    cp.optionxform = str  # keys are case-sensitive, as in libinih
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f)
    except configparser.Error as e:
        sys.exit(f"FAIL: {path}: {e}")
    errors = []
    if cp.defaults():
        errors.append(f"keys outside any section: {sorted(cp.defaults())}")
    for section in cp.sections():
        if section not in known:
            errors.append(f"unknown section [{section}] (known: {', '.join(known)})")
            continue
        for key, value in cp.items(section, raw=True):
            if key not in known[section]:
                errors.append(f"[{section}] unknown key {key!r} (known: {', '.join(known[section])})")
            if "\n" in value:
                errors.append(f"[{section}] {key}: value continues on an indented line")
            if " ;" in value or "\t;" in value:
                errors.append(f"[{section}] {key}: inline comment (libinih would cut the value there)")
    for section, keys in REQUIRED[role].items():
        for key in keys:
            if not cp.has_option(section, key) or not cp.get(section, key, raw=True).strip():
                errors.append(f"[{section}] {key}: required, missing or empty")
    if errors:
        sys.exit("FAIL: " + path + ":\n  " + "\n  ".join(errors))
    return cp

files = [(os.path.join(deploy, "coordinator.ini"), "coordinator"),
         (os.path.join(deploy, "client.ini"), "client")]
files += [(p, "client") for p in sorted(glob.glob(os.path.join(deploy, "compose", "*.ini")))]
if len(files) < 6:
    sys.exit(f"FAIL: expected deploy/coordinator.ini, deploy/client.ini and compose/hospital1..4.ini, found {[f for f, _ in files]}")
for path, role in files:
    cp = check(path, role)
    name = os.path.splitext(os.path.basename(path))[0]
    if name.startswith("hospital"):
        ident = cp.get("client", "id", raw=True)
        key = cp.get("security", "identity", raw=True)
        if ident != name or os.path.basename(key) != name + ".key":
            sys.exit(f"FAIL: {path}: id {ident!r} / identity {key!r} do not match {name}")
    print(f"{os.path.relpath(path, deploy)}: ok ({role}, {len(cp.sections())} sections)")
PY

# ---- 3. the daemons load the examples --------------------------------------------------------
for role in coordinator client; do
  bin=$build/concord-$role
  if [ ! -x "$bin" ]; then
    echo "SKIP: $bin not built; examples not loaded by the daemon"
    continue
  fi
  examples=("$deploy/$role.ini")
  [ "$role" = client ] && examples+=("$deploy"/compose/hospital*.ini)
  for ini in "${examples[@]}"; do
    "$bin" --config "$ini" --print-config >"$tmp/printed.ini" 2>"$tmp/err.txt" \
      || fail "concord-$role rejects $ini: $(cat "$tmp/err.txt")"
    "$bin" --config "$tmp/printed.ini" --print-config >"$tmp/printed2.ini" 2>"$tmp/err.txt" \
      || fail "concord-$role rejects its own --print-config output of $ini: $(cat "$tmp/err.txt")"
    # Same values: compare the key lines only (the "set at" comments name different files).
    diff <(grep -v '^#' "$tmp/printed.ini") <(grep -v '^#' "$tmp/printed2.ini") >/dev/null \
      || fail "concord-$role: --print-config of $ini does not round-trip"
  done
  echo "concord-$role loads its examples: ok"
done

# ---- 4. systemd units ------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  for role in coordinator client; do
    unit=$deploy/systemd/concord-$role.service
    [ -f "$unit" ] || fail "missing $unit"
    grep -q "^ExecStart=/usr/local/bin/concord-$role --config /etc/concord/$role.ini" "$unit" \
      || fail "$unit: ExecStart must run concord-$role --config /etc/concord/$role.ini"
    for directive in ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes DynamicUser=yes \
                     StateDirectory=concord-$role ReadWritePaths= Restart=on-failure; do
      grep -q "^$directive" "$unit" || fail "$unit: missing $directive"
    done
    sed "s#^ExecStart=/usr/local/bin/concord-$role#ExecStart=/bin/true#" "$unit" >"$tmp/concord-$role.service"
  done
  (cd "$tmp" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify ./concord-coordinator.service ./concord-client.service) \
    >"$tmp/verify.txt" 2>&1 || { cat "$tmp/verify.txt"; fail "systemd-analyze verify"; }
  if [ -s "$tmp/verify.txt" ]; then cat "$tmp/verify.txt"; fail "systemd-analyze verify printed warnings"; fi
  echo "systemd units: ok"
else
  echo "SKIP: systemd-analyze not installed; units not verified"
fi
echo "deploy_check: ok"
