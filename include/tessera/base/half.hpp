// Conversions from the 16-bit float formats found in weight files to fp32 (exact: every fp16 and
// bf16 value is representable in fp32).
#pragma once

#include <cstdint>

namespace tessera {

float fp16_to_float(uint16_t bits);
float bf16_to_float(uint16_t bits);

}  // namespace tessera
