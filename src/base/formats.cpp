#include "tessera/base/formats.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#include "tessera/base/error.hpp"

namespace tessera {

namespace {

// A binary floating-point format with an implicit leading bit.
struct Layout {
  int mantissa_bits;
  int min_exponent;  // exponent of the smallest normal number
  double max_finite;
  bool has_infinity;
};

Layout layout(FloatFormat f) {
  switch (f) {
    case FloatFormat::BF16:
      return {7, -126, 0x1.fep127, true};
    case FloatFormat::F16:
      return {10, -14, 65504.0, true};
    case FloatFormat::F8E4M3:
      return {3, -6, 448.0, false};
    case FloatFormat::F8E5M2:
      return {2, -14, 57344.0, true};
    case FloatFormat::F32:
      break;
  }
  return {23, -126, std::numeric_limits<float>::max(), true};
}

// Round-to-nearest-even onto the format's grid, in double (exact: the grid step is a power of two).
double round_to_grid(double x, const Layout& l) {
  int e = 0;
  std::frexp(x, &e);  // |x| in [2^(e-1), 2^e)
  const int exponent = std::max(e - 1, l.min_exponent);
  const double step = std::ldexp(1.0, exponent - l.mantissa_bits);
  return std::nearbyint(x / step) * step;  // default rounding mode: to nearest, ties to even
}

float round_impl(float x, FloatFormat format, bool saturate) {
  if (format == FloatFormat::F32 || std::isnan(x)) return x;
  const Layout l = layout(format);
  if (std::isinf(x)) {
    if (saturate || !l.has_infinity)
      return saturate ? std::copysign(static_cast<float>(l.max_finite), x) : std::numeric_limits<float>::quiet_NaN();
    return x;
  }
  const double r = round_to_grid(static_cast<double>(x), l);
  if (std::abs(r) > l.max_finite) {
    if (saturate) return std::copysign(static_cast<float>(l.max_finite), x);
    return l.has_infinity ? std::copysign(std::numeric_limits<float>::infinity(), x)
                          : std::numeric_limits<float>::quiet_NaN();
  }
  return static_cast<float>(r);
}

uint8_t encode_fp8(float x, int mantissa_bits, int bias, bool saturate, FloatFormat format) {
  const float r = round_impl(x, format, saturate);
  const uint8_t sign = std::signbit(r) ? 0x80 : 0;
  if (std::isnan(r)) return static_cast<uint8_t>(sign | (format == FloatFormat::F8E4M3 ? 0x7F : 0x7E));
  if (std::isinf(r)) return static_cast<uint8_t>(sign | 0x7C);
  const double a = std::abs(static_cast<double>(r));
  if (a == 0) return sign;
  int e = 0;
  std::frexp(a, &e);
  int exponent = e - 1 + bias;
  int mantissa;
  if (exponent <= 0) {  // subnormal
    exponent = 0;
    mantissa = static_cast<int>(std::ldexp(a, bias - 1 + mantissa_bits));
  } else {
    mantissa = static_cast<int>(std::ldexp(a, mantissa_bits - (e - 1))) - (1 << mantissa_bits);
  }
  return static_cast<uint8_t>(sign | (exponent << mantissa_bits) | mantissa);
}

float decode_fp8(uint8_t bits, int mantissa_bits, int bias, FloatFormat format) {
  const bool negative = bits & 0x80;
  const int exponent = (bits & 0x7F) >> mantissa_bits, mantissa = bits & ((1 << mantissa_bits) - 1);
  const int max_exponent = (1 << (7 - mantissa_bits)) - 1;
  float v;
  if (format == FloatFormat::F8E4M3 && exponent == max_exponent && mantissa == (1 << mantissa_bits) - 1) {
    v = std::numeric_limits<float>::quiet_NaN();
  } else if (format == FloatFormat::F8E5M2 && exponent == max_exponent) {
    v = mantissa == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else if (exponent == 0) {
    v = static_cast<float>(std::ldexp(static_cast<double>(mantissa), 1 - bias - mantissa_bits));
  } else {
    v = static_cast<float>(
        std::ldexp(static_cast<double>(mantissa + (1 << mantissa_bits)), exponent - bias - mantissa_bits));
  }
  return negative ? -v : v;
}

int8_t round_half_even_clamped(double v, int limit) {
  return static_cast<int8_t>(std::clamp(static_cast<int>(std::nearbyint(v)), -limit, limit));
}

}  // namespace

FloatFormat parse_float_format(const std::string& name) {
  for (FloatFormat f :
       {FloatFormat::F32, FloatFormat::BF16, FloatFormat::F16, FloatFormat::F8E4M3, FloatFormat::F8E5M2})
    if (name == float_format_name(f)) return f;
  fail("unknown number format '{}'; choose fp32, bf16, fp16, fp8_e4m3 or fp8_e5m2", name);
}

const char* float_format_name(FloatFormat format) {
  switch (format) {
    case FloatFormat::F32:
      return "fp32";
    case FloatFormat::BF16:
      return "bf16";
    case FloatFormat::F16:
      return "fp16";
    case FloatFormat::F8E4M3:
      return "fp8_e4m3";
    case FloatFormat::F8E5M2:
      return "fp8_e5m2";
  }
  return "?";
}

float round_to_format(float x, FloatFormat format, bool saturate) { return round_impl(x, format, saturate); }

uint16_t encode_bf16(float x) {
  const float r = round_impl(x, FloatFormat::BF16, false);
  if (std::isnan(r)) return static_cast<uint16_t>((std::bit_cast<uint32_t>(r) >> 16) | 0x40);
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(r) >> 16);
}

uint16_t encode_fp16(float x) {
  const float r = round_impl(x, FloatFormat::F16, false);
  const uint16_t sign = std::signbit(r) ? 0x8000 : 0;
  if (std::isnan(r)) return static_cast<uint16_t>(sign | 0x7E00);
  if (std::isinf(r)) return static_cast<uint16_t>(sign | 0x7C00);
  const double a = std::abs(static_cast<double>(r));
  if (a == 0) return sign;
  int e = 0;
  std::frexp(a, &e);
  if (e - 1 < -14) return static_cast<uint16_t>(sign | static_cast<int>(std::ldexp(a, 24)));
  const int mantissa = static_cast<int>(std::ldexp(a, 10 - (e - 1))) - 1024;
  return static_cast<uint16_t>(sign | ((e - 1 + 15) << 10) | mantissa);
}

uint8_t encode_fp8_e4m3(float x, bool saturate) { return encode_fp8(x, 3, 7, saturate, FloatFormat::F8E4M3); }
uint8_t encode_fp8_e5m2(float x, bool saturate) { return encode_fp8(x, 2, 15, saturate, FloatFormat::F8E5M2); }
float decode_fp8_e4m3(uint8_t bits) { return decode_fp8(bits, 3, 7, FloatFormat::F8E4M3); }
float decode_fp8_e5m2(uint8_t bits) { return decode_fp8(bits, 2, 15, FloatFormat::F8E5M2); }

std::vector<float> quantize_int8_per_row(std::span<const float> w, int64_t rows, int64_t cols,
                                         std::vector<int8_t>* codes) {
  TESSERA_ASSERT(static_cast<int64_t>(w.size()) == rows * cols);
  std::vector<float> out(w.size());
  if (codes) codes->resize(w.size());
  for (int64_t r = 0; r < rows; ++r) {
    float peak = 0;
    for (int64_t c = 0; c < cols; ++c) peak = std::max(peak, std::abs(w[static_cast<size_t>(r * cols + c)]));
    const float scale = peak > 0 ? peak / 127.0f : 1.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<size_t>(r * cols + c);
      const int8_t q = round_half_even_clamped(static_cast<double>(w[i]) / scale, 127);
      if (codes) (*codes)[i] = q;
      out[i] = static_cast<float>(q) * scale;
    }
  }
  return out;
}

std::vector<float> quantize_int4_groups(std::span<const float> w, int64_t rows, int64_t cols, int64_t group,
                                        std::vector<int8_t>* codes) {
  TESSERA_ASSERT(static_cast<int64_t>(w.size()) == rows * cols);
  if (group <= 0 || cols % group != 0)
    fail("int4 group size {} must divide the row length {}; choose a divisor such as {}", group, cols,
         std::gcd(cols, int64_t{128}));
  std::vector<float> out(w.size());
  if (codes) codes->resize(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < cols; g += group) {
      float peak = 0;
      for (int64_t c = g; c < g + group; ++c) peak = std::max(peak, std::abs(w[static_cast<size_t>(r * cols + c)]));
      const float scale = peak > 0 ? peak / 7.0f : 1.0f;
      for (int64_t c = g; c < g + group; ++c) {
        const auto i = static_cast<size_t>(r * cols + c);
        const int8_t q = round_half_even_clamped(static_cast<double>(w[i]) / scale, 7);
        if (codes) (*codes)[i] = q;
        out[i] = static_cast<float>(q) * scale;
      }
    }
  return out;
}

std::vector<float> quantize_ternary(std::span<const float> w, std::vector<int8_t>* codes) {
  double sum = 0;
  for (float v : w) sum += std::abs(v);
  const auto gamma = static_cast<float>(w.empty() ? 0.0 : sum / static_cast<double>(w.size()));
  const float safe = gamma > 0 ? gamma : 1.0f;
  std::vector<float> out(w.size());
  if (codes) codes->resize(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const int8_t q = round_half_even_clamped(static_cast<double>(w[i]) / safe, 1);
    if (codes) (*codes)[i] = q;
    out[i] = static_cast<float>(q) * gamma;
  }
  return out;
}

}  // namespace tessera
