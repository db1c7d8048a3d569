#!/bin/sh
# A tour of gdag in a throwaway repository: init, publish, lookup, log.
set -eu
demo=$(mktemp -d "${TMPDIR:-/tmp}/gdag-demo.XXXXXX")
echo "== demo repository: $demo"
cd "$demo"

gdag init
cat > gdag.toml <<'TOML'
[outputs."sensors/temp"]
type = "float"

[outputs."notes/*"]
type = "str"
TOML

echo "== publish a few values (each is one commit on refs/gdag/logs/main)"
for t in 20.5 21 22.25; do gdag publish sensors/temp "$t"; done
printf 'buy milk' | gdag publish notes/monday -
gdag publish notes/tuesday "call Ann"

echo "== lookup: the latest value, an older one, and a pattern"
gdag lookup sensors/temp
gdag lookup sensors/temp --at 3      # offset 3: the second value
gdag lookup 'notes/*'
gdag lookup sensors/temp --meta

echo "== a value that does not fit its type is refused (exit 3), nothing written"
gdag publish sensors/temp warm || echo "(exit status $?)"

echo "== the log, as gdag and as plain git see it"
gdag log
git log --format='%h %s' refs/gdag/logs/main
git fsck --strict --no-dangling && echo "git fsck: clean"
