// Number formats, emulated bit-exactly on fp32 values: every function returns the fp32 value the
// format would hold, so arithmetic "in" a format is fp32 arithmetic on rounded operands (with the
// accumulation precision chosen by the caller).
//
//  - bf16, fp16: IEEE-style, round-to-nearest-even, overflow to infinity, subnormals kept.
//  - fp8 e4m3 / e5m2 (OCP 8-bit floating point spec v1.0): round-to-nearest-even; with
//    `saturate` (the default, as ML frameworks convert), out-of-range values and infinities clamp
//    to the largest finite value; without it e4m3 overflows to NaN (it has no infinity) and e5m2
//    to infinity. NaN stays NaN, -0 stays -0.
//  - int8 per output channel and int4 per group: symmetric, scale = max|w| / qmax, round half to
//    even, values clamped to [-qmax, qmax].
//  - ternary (BitNet b1.58 absmean): gamma = mean|w| over the tensor, w -> gamma * clamp(round(w /
//    gamma), -1, 1).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tessera {

enum class FloatFormat { F32, BF16, F16, F8E4M3, F8E5M2 };

FloatFormat parse_float_format(const std::string& name);  // "fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"
const char* float_format_name(FloatFormat format);

// The value of `x` rounded to `format`.
float round_to_format(float x, FloatFormat format, bool saturate = true);

// round_to_format(x, BF16, false) and (x, F16, false), fast enough for every element of a tensor:
// bf16 keeps fp32's top 16 bits, rounded to nearest even; fp16 keeps 10 mantissa bits the same way,
// multiples of 2^-24 below its normal range and infinity above 65,504.
inline float round_to_bf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return x;  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xffff0000u);
}
inline float round_to_fp16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x), magnitude = u & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) return x;                                      // inf, NaN
  if (magnitude < 0x38800000u) return std::nearbyint(x * 0x1p24f) * 0x1p-24f;  // below 2^-14: multiples of 2^-24
  const uint32_t rounded = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;      // 10 mantissa bits, nearest even
  if ((rounded & 0x7fffffffu) > 0x477fe000u) return std::bit_cast<float>((u & 0x80000000u) | 0x7f800000u);  // > 65504
  return std::bit_cast<float>(rounded);
}

// Bit patterns, for tests and for storing tensors compactly.
uint16_t encode_bf16(float x);
uint16_t encode_fp16(float x);
uint8_t encode_fp8_e4m3(float x, bool saturate = true);
uint8_t encode_fp8_e5m2(float x, bool saturate = true);
float decode_fp8_e4m3(uint8_t bits);
float decode_fp8_e5m2(uint8_t bits);

// Integer quantisation of a row-major [rows, cols] matrix; returns the dequantised values and
// fills `codes` with the integers stored (one per element).
std::vector<float> quantize_int8_per_row(std::span<const float> w, int64_t rows, int64_t cols,
                                         std::vector<int8_t>* codes = nullptr);
std::vector<float> quantize_int4_groups(std::span<const float> w, int64_t rows, int64_t cols, int64_t group,
                                        std::vector<int8_t>* codes = nullptr);
std::vector<float> quantize_ternary(std::span<const float> w, std::vector<int8_t>* codes = nullptr);

}  // namespace tessera
