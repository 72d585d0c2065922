// `gemm` as a library request: one matrix product timed alone on each named machine, with each
// algorithm the machine's target has (target::GemmWork), the fastest that fits chosen.
#pragma once

#include <string>
#include <vector>

#include "tessera/report/gemm_report.hpp"
#include "tessera/target/target.hpp"

namespace tessera::api {

// Throws Error on an unknown machine or a request one of them refuses (naming the machine).
std::vector<report::GemmRun> gemm(const std::vector<std::string>& archs, const target::GemmWork& work);

}  // namespace tessera::api
