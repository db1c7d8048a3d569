#!/bin/sh
# Makes log.bundle and lookups.json: a log written in layout version 1 (the layout of
# every tree before sharded directories), by the gdag checkout in $1, for
# tests/test_layout_upgrade.py. Run once; both files are committed. A family of
# exactly SHARD_AT (1,000) members: the next member shards its directory.
set -eu
old=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gdag() { PYTHONPATH="$old" python3 -c 'import sys; from gdag.main import main; sys.exit(main())' "$@"; }
cd "$work"
git init -q -b main repo
cd repo
cp "$here/gdag.toml" gdag.toml
git add gdag.toml
GIT_AUTHOR_DATE=2026-01-01T00:00:00Z GIT_COMMITTER_DATE=2026-01-01T00:00:00Z \
  git -c user.name=gdag -c user.email=gdag@localhost commit -qm "a family and a note"
gdag init >/dev/null
gdag publish note hello >/dev/null 2>&1
gdag publish n 3 >/dev/null 2>&1
gdag publish n 1000 >/dev/null 2>&1
gdag publish note world >/dev/null 2>&1
# Every lookup's exact output (base64), by output and offset.
PYTHONPATH="$old" python3 - "$here/lookups.json" <<'PY'
import base64, json, subprocess, sys
def gdag(*args):
    return subprocess.run([sys.executable, "-m", "gdag", *args], capture_output=True)
tip = json.loads(gdag("log", "-n", "1", "--json").stdout)[0]["offset"]
found = {"tip": tip}
for offset in range(1, tip + 1):
    for out in ("note", "n", "total", "fam/m0", "fam/m2", "fam/m999"):
        r = gdag("lookup", out, "--at", str(offset))
        if r.returncode == 0:
            found[f"{out}@{offset}"] = base64.b64encode(r.stdout).decode()
with open(sys.argv[1], "w") as f:
    json.dump(found, f, indent=1, sort_keys=True)
    f.write("\n")
PY
git bundle create "$here/log.bundle" HEAD main refs/gdag/logs/main 2>/dev/null
