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
