#!/usr/bin/env bash
# Rewrites tests/golden/*.json from tests/golden/commands.txt with the built CLI (build/tessera).
# Run it only after a deliberate change to what tessera computes, and review `git diff tests/golden`.
set -euo pipefail
cd "$(dirname "$0")/.."
while IFS=$'\t' read -r file args; do
  [[ -z "$file" || "$file" == \#* ]] && continue
  rm -f "tests/golden/$file"
  # shellcheck disable=SC2086  # ARGS is a command line, split on purpose
  build/tessera $args --json "tests/golden/$file" > /dev/null
  echo "wrote tests/golden/$file"
done < tests/golden/commands.txt
