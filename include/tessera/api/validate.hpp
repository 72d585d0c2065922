// `validate` as a library request: every row of the validation files (configs/validation/*.yaml)
// predicted by tessera as shipped and set against the published measurement it names.
//
// A validation file (strict YAML):
//   source: "Korthikanti et al. 2022, Table 5"   # default for its rows; a row may name its own
//   url: https://arxiv.org/abs/2205.05198
//   date: 2022-05-10
//   rows:
//     - name: 22B, full recompute                # what was measured
//       model: megatron-22b                      # a shipped model or a config file
//       system: 8xa100                           # a preset or COUNTxPRESET
//       training: {global_batch: 4, micro_batch: 4, seq: 2048, tp: 8, pp: 1, interleave: 1,
//                  zero: 0, recompute: full, attention: unfused}
//                                                 # or inference: {prompt_tokens, generated_tokens,
//                                                 #   batch, dtype}; or, for a component row
//                                                 # (no model), gemm: {m, k, n, dtype, algorithm, cores}
//       metric: step_s                           # see kValidationMetrics
//       published: 1.42
//       note: what the row assumes where the source is silent (optional)
#pragma once

#include <filesystem>
#include <vector>

#include "tessera/report/validation.hpp"

namespace tessera::api {

// The shipped validation files: configs/validation/*.yaml under data_dir(), sorted.
std::vector<std::filesystem::path> validation_files();

// Every row of `files`, in order. Throws Error on a malformed file (naming the file, key and line);
// a workload that does not fit comes back as a row without a prediction.
std::vector<report::ValidationRow> validate(const std::vector<std::filesystem::path>& files);

}  // namespace tessera::api
