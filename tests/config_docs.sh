#!/usr/bin/env bash
# docs/configuration.md stays true to the daemons: every key concord-coordinator and
# concord-client declare (their --print-config with no file lists each with its default)
# is in the daemon's part of the reference with the same default, and every key the
# reference lists for a daemon is one it declares. A default changed in the code without the
# docs (or a key documented but gone) fails here, naming the key.
# Usage: bash tests/config_docs.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$py" - "$build" "$src/docs/configuration.md" <<'PY'
import re, subprocess, sys

build, doc_path = sys.argv[1], sys.argv[2]

def documented(path):
    """{daemon: {(section, key): default cell}} from the '## concord-X' parts' key tables."""
    out, daemon, section = {}, None, None
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^## .*\b(concord-coordinator|concord-client)\b", line)
        if m:
            daemon, section = m.group(1), None
            continue
        if line.startswith("## "):
            daemon, section = None, None
            continue
        m = re.match(r"^###\s+`\[(\w+)\]`", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^\|\s*`([a-z_0-9.]+)`\s*\|([^|]*)\|", line)
        if m and daemon and section:
            out.setdefault(daemon, {})[(section, m.group(1))] = m.group(2).strip()
    return out

def default_of(cell):
    """A default cell as text: `X` or `X` (note) -> X; *(empty...)* -> ''; *(required)* -> None."""
    if cell.startswith("*(empty"):
        return ""
    if cell.startswith("*(required"):
        return None
    m = re.match(r"^`([^`]*)`", cell)
    return m.group(1) if m else cell

def declared(binary):
    """{(section, key): default} from the daemon's --print-config without a config file; a
    key without a default (required) is printed commented out, "# key =": None."""
    text = subprocess.run([binary, "--print-config"], capture_output=True, text=True, check=True).stdout
    out, section = {}, None
    for line in text.splitlines():
        required = re.match(r"^# ([a-z_0-9]+) =\s*$", line)
        if line.startswith("["):
            section = line.strip("[]")
        elif required:
            out[(section, required.group(1))] = None
        elif line and line[0] not in "#;":
            key, _, value = line.partition("=")
            out[(section, key.strip())] = value.strip()
    return out

docs = documented(doc_path)
errors = []
for daemon in ("concord-coordinator", "concord-client"):
    keys = declared(f"{build}/{daemon}")
    doc = docs.get(daemon, {})
    if not doc:
        errors.append(f"{daemon}: no key tables found in docs/configuration.md")
        continue
    for (section, key), value in sorted(keys.items()):
        if (section, key) not in doc:
            errors.append(f"{daemon}: [{section}] {key} is not documented")
        elif default_of(doc[(section, key)]) != value:
            errors.append(f"{daemon}: [{section}] {key}: the docs say default {doc[(section, key)]}, "
                          f"the daemon {value!r}")
    for section, key in sorted(set(doc) - set(keys)):
        errors.append(f"{daemon}: [{section}] {key} is documented but the daemon has no such key")
    print(f"{daemon}: {len(keys)} keys checked against the reference")
if errors:
    sys.exit("FAIL:\n  " + "\n  ".join(errors))
PY
