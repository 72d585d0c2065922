// libFuzzer target: any byte string must parse or throw tessera::Error — never crash, hang or
// read out of bounds. Build and run (clang-14, ASan + UBSan):
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++-14 -DTESSERA_FUZZ=ON -DTESSERA_BUILD_TESTS=OFF \
//         -DTESSERA_BUILD_BENCH=OFF && cmake --build build-fuzz --target fuzz_safetensors -j2
//   ./build-fuzz/fuzz/fuzz_safetensors -max_total_time=60 fuzz/corpus
#include <cstddef>
#include <cstdint>

#include "tessera/base/error.hpp"
#include "tessera/model/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto index = tessera::model::parse_safetensors({data, size}, "fuzz");
    for (const auto& e : index.entries)
      if (index.data_start + e.end > size) __builtin_trap();
  } catch (const tessera::Error&) {
  }
  return 0;
}
