// What the CLI's commands share: flag structs, progress, arch and output-path resolution,
// loading a model and a target, compiling and simulating on it, weights and tokenizer loading, and
// streaming generation.
#pragma once

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tessera/api/catalog.hpp"
#include "tessera/arch/arch_spec.hpp"
#include "tessera/report/run_report.hpp"
#include "tessera/target/target.hpp"

namespace tessera::cli {

namespace fs = std::filesystem;

// Progress on stderr for work that takes a while: a redrawn bar with an ETA on a terminal, a plain
// line every few seconds otherwise, nothing with --quiet or when the work finishes within a second.
class Progress {
 public:
  Progress(std::string what, bool quiet) : what_(std::move(what)), quiet_(quiet), tty_(isatty(fileno(stderr))) {}
  ~Progress() {
    if (drawn_ && tty_) std::fputs("\r\033[K", stderr);
  }

  void update(int64_t done, int64_t total) {
    if (quiet_ || total <= 0) return;
    const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    if (elapsed < 1.0 || (done < total && elapsed - last_ < (tty_ ? 0.1 : 5.0))) return;
    last_ = elapsed;
    const double fraction = static_cast<double>(done) / static_cast<double>(total);
    const double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0;
    if (tty_) {
      const int filled = static_cast<int>(fraction * 30);
      std::fprintf(stderr, "\r\033[K%s [%s%s] %lld/%lld, ETA %.1f s", what_.c_str(), std::string(filled, '#').c_str(),
                   std::string(30 - filled, ' ').c_str(), static_cast<long long>(done), static_cast<long long>(total),
                   eta);
    } else {
      std::fprintf(stderr, "%s: %lld/%lld (%.0f%%), %.1f s elapsed, ETA %.1f s\n", what_.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total), 100 * fraction, elapsed, eta);
    }
    std::fflush(stderr);
    drawn_ = true;
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string what_;
  bool quiet_, tty_, drawn_ = false;
  clock::time_point start_ = clock::now();
  double last_ = 0;
};

// Files a simulated run writes (empty: not written).
struct Outputs {
  std::string json, trace, heatmaps, csv;
  std::string fidelity = "flow";  // not a file: how finely a mesh's collectives are timed
  bool cycle_level = false;       // not a file: --fidelity cycle
  std::string cycle_region;       // not a file: a stage timed at the cycle tier inside the run
  bool quiet = false;             // no progress lines
  std::vector<fs::path> inputs;   // not a flag: the files the command reads, which no output may replace
};

// The precision policy as given: a YAML file, then --dtype for all three formats, then the
// per-tensor flags, each overriding what came before ("" = not given).
struct PrecisionFlags {
  std::string file, dtype, weights, activations, kv, prune, scales;
  std::optional<int64_t> group;

  PrecisionPolicy resolve() const {
    PrecisionPolicy p = file.empty() ? PrecisionPolicy{} : arch::load_precision_policy(file);
    if (!dtype.empty()) p.weights = p.activations = p.kv = dtype;
    if (!weights.empty()) p.weights = weights;
    if (!activations.empty()) p.activations = activations;
    if (!kv.empty()) p.kv = kv;
    if (group) p.group = *group;
    if (!prune.empty()) p.prune = prune;
    if (!scales.empty()) p.scales = scales;
    p.validate();
    return p;
  }
};

struct RunFlags {
  std::string model = "default";
  std::string weights;
  std::string tokenizer_dir;
  std::string prompt = "It is a truth universally acknowledged, that";
  int64_t max_tokens = 64;
  double temperature = 0.8;
  int64_t top_k = 40;
  uint64_t seed = 0;
  std::string arch = "wse2";
  bool no_numerics = false;
  int64_t prompt_tokens = 0;        // timing-only: prompt length when there is no tokenizer
  int64_t batch = 1;                // GPUs: requests decoded together
  int64_t tensor_parallel = 1;      // GPUs: tensor-parallel group size
  int64_t expert_parallel = 1;      // GPUs: expert-parallel group size (mixtures of experts)
  std::string routing = "uniform";  // mixtures of experts: compiler::Routing by name
  std::string logits;               // with values: the generated positions' logits (.npy)
  PrecisionFlags precision;
  Outputs outputs;
};

// The library's loaders, used by every command.
using api::compile_or_fail;
using api::data_dir;
using api::encode_prompt;
using api::load_model_source;
using api::load_target;
using api::load_tokenizer;
using api::preset_files;
using api::resolve_arch;
using api::resolve_model;

// Output paths are checked before any work (report/output_files.hpp): an output never replaces a
// file tessera did not write or one of the command's inputs, and no path is given for two outputs.
void check_outputs(const std::vector<std::string>& paths, const std::vector<fs::path>& inputs);
void check_outputs(const Outputs& out);

// What simulating a run needs from its flags: the timeline, the fabric model, link loads for the
// JSON and heatmaps, and progress on stderr.
target::SimulateOptions simulate_options(const Outputs& out, Progress& progress);
// The files `out` asks a simulated run for, as the report module takes them.
report::RunFiles run_files(const Outputs& out);
// Prints a simulated run's summary and writes the files `out` asks for.
void report_run(const target::RunReport& run, const Outputs& out);

}  // namespace tessera::cli
