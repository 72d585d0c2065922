// A matrix product timed alone (`tessera gemm`): each algorithm on each machine, for people and as JSON.
#pragma once

#include <string>
#include <vector>

#include "tessera/target/target.hpp"

namespace tessera::report {

struct GemmRun {
  std::string arch;
  double clock_hz = 0;
  target::GemmOutcome outcome;
};

// Per machine: the layout, then a row per algorithm (time, TFLOP/s, share of the peak, where the
// time goes, SRAM per core, the values' error) and the one chosen.
std::string gemm_table(const target::GemmWork& work, const std::vector<GemmRun>& runs);
std::string gemm_json(const target::GemmWork& work, const std::vector<GemmRun>& runs);

}  // namespace tessera::report
