#!/bin/sh
# Regenerates the tables of docs/precision.md: for each precision policy, the shipped model's
# perplexity on held-out text (host reference) and, on the wse2 preset with values, decode
# tokens/s per user, SRAM high-water per core, energy per token and the zero activations measured.
# Usage: tools/precision_table.sh [build-dir]   (about two minutes on 2 cores)
set -eu
build=${1:-build}
tessera="$build/tessera"
text=tests/data/text/persuasion-end.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

row() {
  label=$1
  shift
  ppl=$("$tessera" eval -q --window 128 --text "$text" "$@" | sed -n 's/.*perplexity \([0-9.]*\) .*/\1/p')
  if "$tessera" run -q -n 64 --temperature 0 --arch wse2 --json "$work/run.json" "$@" >"$work/out.txt" 2>"$work/err.txt"; then
    speed=$(python3 - "$work/run.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
p = r["precision"]
zeros = max((1 - d for d in p["activation_density"].values()), default=0)
print("| {:.0f} | {:.1f} | {:.4f} | {:.3g} | {:.1f}% |".format(
    r["decode_tokens_per_s_per_user"], r["sram"]["high_water_bytes_per_core"] / 1024,
    sum(r["energy_per_decode_token"][k] for k in ("compute_pj", "sram_pj", "fabric_pj", "offchip_pj")) * 1e-9,
    p["weight_bits"], 100 * zeros))
EOF
)
  else
    speed="| not supported on wse2 | | | | |"
  fi
  echo "| $label | $ppl $speed"
}

echo "| policy | perplexity | wse2 decode tok/s | SRAM KiB/core | mJ/token | bits/weight | most zero inputs |"
echo "|---|---|---|---|---|---|---|"
echo "| **weights only (activations, KV fp32)** | | | | | | |"
row "fp32" --weights-format fp32
row "bf16" --weights-format bf16
row "fp16" --weights-format fp16
row "fp8 e4m3, no scales" --weights-format fp8_e4m3
row "fp8 e4m3, scale per channel" --weights-format fp8_e4m3 --scales channel
row "fp8 e5m2, no scales" --weights-format fp8_e5m2
row "fp8 e5m2, scale per channel" --weights-format fp8_e5m2 --scales channel
row "int8, scale per tensor" --weights-format int8 --scales tensor
row "int8, scale per channel" --weights-format int8
row "int4, scale per tensor" --weights-format int4 --scales tensor
row "int4, scale per channel" --weights-format int4 --scales channel
row "int4, scale per 32 inputs" --weights-format int4
row "ternary, scale per tensor (b1.58)" --weights-format ternary
row "ternary, scale per channel" --weights-format ternary --scales channel
echo "| **activations and KV cache** | | | | | | |"
row "W fp16, A fp16, KV fp16" --dtype fp16
row "W int8, A fp16, KV fp16" --dtype fp16 --weights-format int8
row "W int4/g32, A fp16, KV fp8 e4m3" --dtype fp16 --weights-format int4 --kv-format fp8_e4m3
row "W int4/g32, A fp16, KV fp8 e5m2" --dtype fp16 --weights-format int4 --kv-format fp8_e5m2
row "W bf16, A bf16, KV bf16" --dtype bf16
row "W fp8 e4m3/channel, A fp8 e4m3, KV fp8 e4m3" --dtype fp8_e4m3 --scales channel
echo "| **pruning (W, A, KV fp16)** | | | | | | |"
for p in unstructured:0.5 unstructured:0.25 unstructured:0.1 2:4 1:4 1:8 block16:0.5 block16:0.25 block16:0.1; do
  row "$p" --dtype fp16 --prune "$p"
done
