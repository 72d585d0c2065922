// Side-by-side figures of one model on several machines (`tessera compare`), and the GPU run
// summary.
#pragma once

#include <string>
#include <vector>

#include "tessera/system/system.hpp"
#include "tessera/target/exchange/bsp_timing.hpp"
#include "tessera/target/mesh2d/mesh_timing.hpp"
#include "tessera/target/shared_memory/gpu_timing.hpp"

namespace tessera::report {

struct CompareRow {
  std::string arch, model;  // arch as the user named the system ("4xwse3")
  int64_t chips = 1, batch = 1;
  bool fits = false;
  std::string mapping;  // how the model is split over the chips ("pipeline 4", "tensor 2 x data 4")
  std::string note;     // why it does not run, when it does not
  std::optional<compiler::FitFailure> fit_failure;  // when the model does not fit a chip: what overflowed
  double time_to_first_token_s = 0;
  double tokens_per_s_per_user = 0, tokens_per_s = 0;
  double served_tokens_per_s = 0;  // the batch's generated tokens over its whole time, prompts included
                                   // (one_pass: the prompt tokens it processes per second)
  bool one_pass = false;           // nothing generated (an encoder): time to first token is the pass
  double energy_per_token_j = 0;
  double utilization = 0;  // decode MACs / (peak MAC rate x decode time)
  std::string bound;       // what decode time is mostly spent on
  std::string tokens;      // with --numerics: "= reference" or where the greedy tokens first differ
};

CompareRow compare_row(const std::string& arch, const std::string& model, int64_t batch, const system::Result& r);

std::string compare_table(const std::vector<CompareRow>& rows);
std::string compare_json(const std::vector<CompareRow>& rows);
std::string compare_csv(const std::vector<CompareRow>& rows);
// For rows of a batch sweep (per machine, batch ascending): a line per machine saying up to which
// batch it stays bound by what it is bound by at batch 1, what bounds it after, where aggregate
// throughput peaks and the largest batch that fits.
std::string batch_sweep_summary(const std::vector<CompareRow>& rows);

std::string gpu_summary_table(const sim::GpuReport& r);
// A run that generates nothing (an encoder's, or -n 0): its one pass over the prompt, in place of
// the time to first token and decode lines.
std::string one_pass_line(double seconds, int64_t tokens);
std::string bsp_summary_table(const sim::BspReport& r);

}  // namespace tessera::report
