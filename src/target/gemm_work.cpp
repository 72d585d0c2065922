#include "gemm_work.hpp"

#include <fmt/core.h>

#include <cmath>
#include <random>

#include "tessera/base/error.hpp"
#include "tessera/base/formats.hpp"

namespace tessera::target {

double gemm_mac_rate(const arch::ArchSpec& a, const GemmWork& work) {
  constexpr int64_t kLargest = int64_t{1} << 31;
  if (work.m < 1 || work.k < 1 || work.n < 1 || work.m > kLargest || work.k > kLargest || work.n > kLargest)
    fail("a product of {} x {} by {} x {}: every dimension must be 1 to 2^31 ({})", work.m, work.k, work.k, work.n,
         kLargest);
  const auto rate = a.core.macs_per_cycle.find(work.dtype);
  if (rate == a.core.macs_per_cycle.end()) {
    std::string have;
    for (const auto& [dtype, _] : a.core.macs_per_cycle) have += (have.empty() ? "" : ", ") + dtype;
    fail("{} has no {} MACs; its cores multiply {}", a.name, work.dtype, have);
  }
  return rate->second;
}

GemmOperands gemm_operands(const GemmWork& work) {
  GemmOperands out;
  const double macs = static_cast<double>(work.m) * static_cast<double>(work.k) * static_cast<double>(work.n);
  if (macs > kMaxGemmValueMacs) {
    out.not_computed = fmt::format(
        "values not computed: {:.3g} multiply-adds, beyond the {:.3g} tessera computes core by core on this host "
        "(--no-numerics: time only)",
        macs, kMaxGemmValueMacs);
    return out;
  }
  const FloatFormat format = parse_float_format(work.dtype);
  std::mt19937_64 rng(work.seed);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  auto fill = [&](std::vector<float>& v, int64_t count) {
    v.resize(static_cast<size_t>(count));
    for (auto& x : v) x = round_to_format(uniform(rng), format);
  };
  fill(out.a, work.m * work.k);
  fill(out.b, work.k * work.n);
  out.product.assign(static_cast<size_t>(work.m * work.n), 0.0);
  for (int64_t i = 0; i < work.m; ++i)
    for (int64_t l = 0; l < work.k; ++l) {
      const double x = out.a[static_cast<size_t>(i * work.k + l)];
      for (int64_t j = 0; j < work.n; ++j)
        out.product[static_cast<size_t>(i * work.n + j)] += x * out.b[static_cast<size_t>(l * work.n + j)];
    }
  for (double v : out.product) out.max_abs_product = std::max(out.max_abs_product, std::abs(v));
  return out;
}

}  // namespace tessera::target
