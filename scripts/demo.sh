#!/bin/sh
# A tour of gdag in a throwaway repository: a small DAG, publish, run, lookup, graph.
set -eu
demo=$(mktemp -d "${TMPDIR:-/tmp}/gdag-demo.XXXXXX")
echo "== demo repository: $demo"
cd "$demo"
gdag init

cat > gdag.toml <<'TOML'
[outputs."sensors/temp"]
type = "float"

[outputs."stats/mean"]
type = "float"

# A shell node: inputs arrive as files, outputs are files under $GDAG_OUT.
[nodes.fahrenheit]
run = 'awk "{ print \$1 * 9 / 5 + 32 }" "$GDAG_IN_C" > "$GDAG_OUT/sensors/temp_f"'
inputs = { c = "sensors/temp" }
publishes = ["sensors/temp_f"]

# Runs once per new reading, in order, and keeps a history in a dynamic output.
[nodes.history]
run = 'cp "$GDAG_IN_C" "$GDAG_OUT/history/$(date +%s%N)"'
inputs = { c = "sensors/temp" }
publishes = ["history/*"]
mode = "each"

# A Python node: typed arguments in, typed value out.
[nodes.mean]
python = "stats:mean"
inputs = { readings = "history/*" }
publishes = ["stats/mean"]
TOML

cat > stats.py <<'PY'
def mean(readings: dict[str, bytes]) -> float:
    values = [float(v) for v in readings.values()]
    return round(sum(values) / len(values), 2)
PY

echo "== publish three readings without running, then run everything stale"
for t in 20.5 21 22.25; do gdag publish sensors/temp "$t" --no-run; done
gdag status
gdag run

echo "== lookup: latest values, an older one, a pattern"
gdag lookup sensors/temp_f
gdag lookup stats/mean
gdag lookup sensors/temp --at 2
gdag lookup 'history/*' | wc -l

echo "== a publish runs the subscribers by itself"
gdag publish sensors/temp 30
gdag lookup stats/mean

echo "== a value that does not fit its type is refused (exit 3), nothing written"
gdag publish sensors/temp warm || echo "(exit status $?)"

echo "== the graph, and the log as gdag and as plain git see it"
gdag graph --format tree
gdag graph --format html -o graph.html && echo "wrote $demo/graph.html"
gdag log --limit 5
git log --oneline --graph refs/gdag/logs/main | head -12
git fsck --strict --no-dangling 2>/dev/null && echo "git fsck: clean"
