// What every target's GEMM kernel model (Target::simulate_gemm) shares: the request's checks and
// the operands whose product a data plane computes. Private to src/target/.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tessera/target/target.hpp"

namespace tessera::target {

// The MACs per cycle per core of `work.dtype` on `a`; throws Error naming what is wrong with the
// request (a dimension below 1, a dtype the chip does not multiply).
double gemm_mac_rate(const arch::ArchSpec& a, const GemmWork& work);

// The operands (uniform in [-1, 1) rounded to work.dtype, from work.seed, row-major) and the
// host's product of them in double, or, beyond kMaxGemmValueMacs multiply-adds, none and why.
constexpr double kMaxGemmValueMacs = 1073741824.0;  // 2^30, about a 1,024^3 product
struct GemmOperands {
  std::vector<float> a, b;
  std::vector<double> product;
  double max_abs_product = 0;
  std::string not_computed;  // "": the operands and product are here
};
GemmOperands gemm_operands(const GemmWork& work);

// The larger of `worst` and |got - want|, where a NaN makes it infinite (and keeps it so).
inline double worse_error(double worst, float got, double want) {
  const double e = std::abs(static_cast<double>(got) - want);
  return std::isnan(e) ? INFINITY : std::max(worst, e);
}

}  // namespace tessera::target
