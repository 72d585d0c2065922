// A matrix product as a kernel of its own on an exchange (IPU-like) chip (exchange_gemm.cpp).
#pragma once

#include "tessera/target/target.hpp"

namespace tessera::target {

GemmOutcome simulate_exchange_gemm(const arch::ArchSpec& a, const GemmWork& work);

}  // namespace tessera::target
