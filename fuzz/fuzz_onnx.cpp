// libFuzzer target: any byte string given as a .onnx model must be raised or refused with
// tessera::Error — never crash, hang or read out of bounds (scripts/fuzz.sh builds and runs it).
#include <cstddef>
#include <cstdint>
#include <string>

#include "tessera/base/error.hpp"
#include "tessera/onnx/onnx_import.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto model =
        tessera::onnx_import::import_onnx(std::string(reinterpret_cast<const char*>(data), size), "fuzz.onnx");
    if (model.n_layers < 1 || model.tensors.empty()) __builtin_trap();
  } catch (const tessera::Error&) {
  }
  return 0;
}
