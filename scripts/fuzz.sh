#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan) into build-fuzz/ and runs each for a fixed,
# seeded number of inputs from its seed corpus, so that CI runs are repeatable. Installs clang-14
# and its fuzzer runtime with apt-get when missing. Usage: scripts/fuzz.sh [RUNS] (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}

missing=()
for p in clang-14 libclang-rt-14-dev; do
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
  cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DTESSERA_FUZZ=ON -DTESSERA_BUILD_TESTS=OFF \
        -DTESSERA_BUILD_BENCH=OFF > /dev/null
cmake --build build-fuzz --target fuzz_safetensors fuzz_descriptions -j2

# Seeds: the committed safetensors corpus; every shipped arch and model description.
yaml_seeds=$(mktemp -d)
trap 'rm -rf "$yaml_seeds"' EXIT
cp configs/arch/*.yaml configs/models/*.yaml tests/data/llama-tiny.yaml "$yaml_seeds/"
for target in fuzz_safetensors fuzz_descriptions; do
  seeds=fuzz/corpus
  [ "$target" = fuzz_descriptions ] && seeds=$yaml_seeds
  echo "fuzz: $target, $runs inputs"
  # -runs and -seed make the run repeatable; a failing input is written to build-fuzz/ (crash-*).
  log=build-fuzz/$target.log
  if ! "build-fuzz/fuzz/$target" -runs="$runs" -seed=1 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix=build-fuzz/ "$seeds" > "$log" 2>&1; then
    tail -n 30 "$log"
    echo "fuzz: $target found a failing input (see build-fuzz/)"
    exit 1
  fi
  tail -n 1 "$log"
done
