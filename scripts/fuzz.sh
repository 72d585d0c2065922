#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan) into build-fuzz/ and runs each for a fixed,
# seeded number of inputs from its seed corpus, so that CI runs are repeatable, or for a given time
# each (long runs). Installs clang-14 and its fuzzer runtime with apt-get when missing.
# Usage: scripts/fuzz.sh [RUNS]          each target for RUNS inputs (default 20000)
#        scripts/fuzz.sh --seconds N     each target for N seconds
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-runs="${1:-20000}")
what="${1:-20000} inputs"
if [ "${1:-}" = "--seconds" ]; then
  [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "fuzz: --seconds needs a whole number of seconds"; exit 2; }
  limit=(-max_total_time="$2")
  what="$2 s"
fi

missing=()
for p in clang-14 libclang-rt-14-dev libomp-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { "${sudo_cmd[@]}" apt-get update -q && "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; }
fi

[ -f build-fuzz/CMakeCache.txt ] ||
  cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DTESSERA_FUZZ=ON -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_PYTHON=OFF -DTESSERA_BUILD_MPI=OFF \
        -DTESSERA_BUILD_BENCH=OFF > /dev/null
targets=(fuzz_safetensors fuzz_descriptions fuzz_plans fuzz_tokenizer fuzz_onnx)
cmake --build build-fuzz --target "${targets[@]}" -j2

# Seeds: the committed safetensors corpus; every shipped arch and model description; the plans and
# run JSON of each fabric, written by the CLI of the main build; text and a tiny vocabulary; the
# smaller committed ONNX export.
[ -x build/tessera ] || { echo "fuzz: build/tessera is missing; run scripts/setup.sh first"; exit 1; }
seeds_root=$(mktemp -d)
trap 'rm -rf "$seeds_root"' EXIT
mkdir -p "$seeds_root"/{descriptions,plans,tokenizer,onnx}
cp tests/data/onnx/micro.onnx "$seeds_root/onnx/"
cp configs/arch/*.yaml configs/models/*.yaml configs/sweeps/*.yaml tests/data/llama-tiny.yaml "$seeds_root/descriptions/"
cp tests/data/sweeps/tiny.yaml "$seeds_root/descriptions/sweep-tiny.yaml"
for family in gpt2 llama; do cp "tests/data/hf/$family/config.json" "$seeds_root/descriptions/hf-$family.json"; done
for arch in mesh-32x32 gc200 h100; do
  build/tessera compile --arch "$arch" --prompt-tokens 4 -n 2 -o "$seeds_root/plans/$arch-plan.json" > /dev/null
  build/tessera simulate "$seeds_root/plans/$arch-plan.json" --json "$seeds_root/plans/$arch-run.json" > /dev/null
done
for text in tests/data/text/*.txt; do
  { printf '\0'; head -c 2000 "$text"; } > "$seeds_root/tokenizer/$(basename "$text")"
done
printf '\001{"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}\000#version: 0.2\na b\n' > "$seeds_root/tokenizer/vocab"

for target in "${targets[@]}"; do
  case $target in
    fuzz_safetensors) seeds=fuzz/corpus ;;
    fuzz_descriptions) seeds=$seeds_root/descriptions ;;
    fuzz_plans) seeds=$seeds_root/plans ;;
    fuzz_tokenizer) seeds=$seeds_root/tokenizer ;;
    fuzz_onnx) seeds=$seeds_root/onnx ;;
  esac
  echo "fuzz: $target, $what"
  # -runs and -seed make the run repeatable; a failing input is written to build-fuzz/ (crash-*).
  log=build-fuzz/$target.log
  # New inputs go to a scratch corpus in build-fuzz/ (the first directory); the seeds stay as they are.
  rm -rf "build-fuzz/corpus-$target" && mkdir -p "build-fuzz/corpus-$target"
  if ! "build-fuzz/fuzz/$target" "${limit[@]}" -seed=1 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix=build-fuzz/ "build-fuzz/corpus-$target" "$seeds" > "$log" 2>&1; then
    tail -n 30 "$log"
    echo "fuzz: $target found a failing input (see build-fuzz/)"
    exit 1
  fi
  tail -n 1 "$log"
done
