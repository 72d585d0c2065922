#!/bin/sh
# Regenerates the table of docs/validation.md, "Wafer prefill against prompt length": llama3-8b
# in fp16, timing only, on wse2 and wse3 at four prompt lengths: the chunk the compiler chose,
# time to first token, the stages' summed work over the phase's time (overlap) and the used
# cores' compute / communication / idle split.
# Usage: tools/prefill_table.sh [build-dir]   (about a minute on 2 cores)
set -eu
build=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| arch | prompt tokens | chunk | chunks | TTFT ms | overlap | core time |"
echo "|---|---|---|---|---|---|---|"
for arch in wse2 wse3; do
  for tokens in 128 512 2048 8000; do
    "$build/tessera" run -q -m llama3-8b --arch "$arch" --no-numerics --dtype fp16 --prompt-tokens "$tokens" -n 2 \
      --json "$work/run.json" >/dev/null
    python3 - "$work/run.json" "$arch" "$tokens" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
p, chunk = r["prefill"], r["config"]["prefill_chunk_tokens"]
work = p["compute_cycles"] + p["communication_cycles"] + p["host_cycles"]
t = p["core_time"]
print("| {} | {:,} | {} | {:,} | {:.2f} | {:.1f}x | {:.1f}% / {:.1f}% / {:.1f}% |".format(
    sys.argv[2], int(sys.argv[3]), chunk, p["passes"], p["seconds"] * 1e3, work / p["cycles"],
    100 * t["compute"], 100 * t["communication"], 100 * t["idle"]))
EOF
  done
done
