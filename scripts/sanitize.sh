#!/usr/bin/env bash
# Builds everything with AddressSanitizer + UndefinedBehaviorSanitizer (gcc) into build-asan/ and
# runs the whole test suite under them: any out-of-bounds access, use after free, leak, overflow
# of a signed integer or other undefined behaviour fails the test that caused it. CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build-asan/CMakeCache.txt ] ||
  cmake -S . -B build-asan -DTESSERA_SANITIZE=ON -DTESSERA_BUILD_BENCH=OFF -DTESSERA_BUILD_PYTHON=OFF -DTESSERA_BUILD_MPI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" > /dev/null  # -O1: quicker to build, still fast enough to test
cmake --build build-asan -j2
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-asan -j2 --output-on-failure
