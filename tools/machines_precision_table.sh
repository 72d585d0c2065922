#!/bin/sh
# Regenerates the "Across machines" table of docs/precision.md: what each precision policy buys on
# each kind of machine, llama3-8b timing-only (128 prompt + 128 generated tokens): decode tokens/s
# per user at batch 1, in all at batch 16, and energy per token at batch 1.
# Usage: tools/machines_precision_table.sh [build-dir]   (about two minutes on 2 cores)
set -eu
build=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
machines=wse3,h100,trn2,34xgc200

n=0
row() {
  label=$1
  shift
  n=$((n + 1))
  "$build/tessera" compare -m llama3-8b --arch "$machines" --batch 1,16 --csv "$work/$n.csv" "$@" >/dev/null
  python3 - "$work/$n.csv" "$label" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for arch in dict.fromkeys(r["arch"] for r in rows):
    one = next(r for r in rows if r["arch"] == arch and r["batch"] == "1")
    many = next(r for r in rows if r["arch"] == arch and r["batch"] == "16")
    if one["fits"] != "1":
        why = "not supported" if "does not support" in one["note"] else "does not fit"
        print(f"| {sys.argv[2]} | {arch} | {why} | | | |")
        continue
    batch16 = "{:.0f}".format(float(many["tokens_per_s"])) if many["fits"] == "1" else "does not fit"
    print("| {} | {} | {:.0f} | {} | {:.1f} | {} |".format(
        sys.argv[2], arch, float(one["tokens_per_s_per_user"]), batch16,
        float(one["energy_per_token_j"]) * 1e3, one["bound"]))
PY
}

echo "| policy | machine | tok/s per user (batch 1) | tok/s in all (batch 16) | mJ/token (batch 1) | bound |"
echo "|---|---|---|---|---|---|"
row "fp16" --dtype fp16
row "fp16, 2:4 pruned" --dtype fp16 --prune 2:4
row "fp16, 1:4 pruned" --dtype fp16 --prune 1:4
row "fp16, 16x16 blocks, 25% kept" --dtype fp16 --prune block16:0.25
row "fp16, unstructured, 25% kept" --dtype fp16 --prune unstructured:0.25
row "W int4/g32, A fp16, KV fp16" --dtype fp16 --weights-format int4
row "fp8 e4m3 everywhere" --dtype fp8_e4m3 --scales channel
