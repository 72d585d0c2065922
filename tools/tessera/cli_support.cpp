#include "cli_support.hpp"

#include <algorithm>
#include <cstdlib>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/model/quantize.hpp"
#include "tessera/report/output_files.hpp"
#include "tessera/report/run_report.hpp"
#include "tessera/target/registry.hpp"

namespace tessera::cli {

namespace {

void refuse_repeated_paths(const std::vector<std::string>& paths) {
  for (size_t i = 0; i < paths.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (!paths[i].empty() && paths[j] == paths[i])
        fail("{}: given for two outputs; choose a path for each (nothing was written)", paths[i]);
}

}  // namespace

void check_outputs(const std::vector<std::string>& paths, const std::vector<fs::path>& inputs) {
  refuse_repeated_paths(paths);
  for (const auto& path : paths)
    if (!path.empty()) report::check_output_path(path, inputs);
}

void check_outputs(const Outputs& out) {
  refuse_repeated_paths({out.json, out.trace, out.csv, out.heatmaps});
  check_outputs({out.json, out.trace, out.csv}, out.inputs);
  if (!out.heatmaps.empty()) report::check_output_directory(out.heatmaps, out.inputs);
}

int simulate_and_report(const target::Target& target, const target::Plan& plan, const Outputs& out,
                        const std::map<std::string, double>& activation_density) {
  const report::RunFiles files{out.json, out.csv, out.trace, out.heatmaps, out.inputs};
  Progress progress("simulating", out.quiet);
  const target::RunReport run =
      target.simulate(plan, {.record_trace = !out.trace.empty(),
                             .cycle_level = out.cycle_level,
                             .link_loads = !out.json.empty() || !out.heatmaps.empty(),
                             .on_pass = [&](int64_t done, int64_t total) { progress.update(done, total); },
                             .activation_density = activation_density});
  std::fputs(report::summary_table(run).c_str(), stdout);
  if (files.any()) std::fputs(report::write_run_files(run, files).c_str(), stdout);
  return 0;
}

// Timing-only runs: --prompt-tokens, or the length of the tokenized prompt.
int64_t timing_prompt_tokens(const ir::ModelConfig& config, const RunFlags& flags) {
  if (flags.prompt_tokens != 0) return flags.prompt_tokens;
  if (!config.encoder_path && flags.tokenizer_dir.empty())
    fail("model '{}' ships no tokenizer; give the prompt length with --prompt-tokens N", config.name);
  return static_cast<int64_t>(encode_prompt(load_tokenizer(config, flags.tokenizer_dir), flags.prompt).size());
}

}  // namespace tessera::cli
