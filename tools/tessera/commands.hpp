// The CLI's commands, one function each; main.cpp wires them to CLI11.
#pragma once

#include <string>
#include <vector>

#include "cli_support.hpp"
#include "tessera/api/train.hpp"

namespace tessera::cli {

struct CompareFlags {
  std::vector<std::string> models = {"default"};  // inference: one or more, side by side
  std::vector<std::string> archs = {"wse2", "h100"};
  int64_t prompt_tokens = 128, max_tokens = 128;
  std::vector<int64_t> batches = {1};
  bool sweep = false;  // batch 1, 2, 4, ... until the requests no longer fit
  int64_t tensor_parallel = 0;
  int64_t expert_parallel = 0;
  std::string routing = "uniform";  // mixtures of experts: compiler::Routing by name
  PrecisionFlags precision;
  std::string json, csv;
  bool numerics = false;  // also generate greedily with values on every single-chip arch
  std::string weights;    // for --numerics: a safetensors file, or "random"
  uint64_t seed = 0;
  bool train = false;         // one training step per machine instead of inference
  target::TrainingWork work;  // with --train: the batch and recompute (layouts chosen per machine)
  std::string recompute = "selective";
};

struct CompileFlags {
  std::string model = "default";
  std::string emit = "ir";
  std::string arch;
  std::string output;
  int64_t prompt_tokens = 16;
  int64_t max_tokens = 64;
  int64_t batch = 1;
  int64_t tensor_parallel = 1;
  int64_t expert_parallel = 1;
  PrecisionFlags precision;
};

struct TrainFlags {
  api::TrainRequest request;
  std::string optimizer = "adamw", recompute = "none";
  bool quiet = false;
  std::string arch = "host";  // or a machine: timing-only, --no-numerics
  bool no_numerics = false;
  target::TrainingWork work;  // with --arch: the parallel layout and batch
  std::string attention = "fused";
  bool no_sequence_parallel = false;
  std::string json, trace;  // with --arch: the step's figures and timeline
};

int run_command(const RunFlags& flags);
// `tessera train`: the reference trainer on a text file, with checkpoints and a loss curve.
int train_command(const TrainFlags& flags);
int eval_command(const RunFlags& flags, const std::string& text_path, int64_t window);
int compile_command(const CompileFlags& flags);
// `tessera simulate PLAN`: any plan `compile --arch` writes, told apart by its format field.
int simulate_command(const std::string& plan_path, const Outputs& outputs);
// One model on several machines (a preset, or a system COUNTxPRESET): a row per machine and batch.
int compare_command(const CompareFlags& flags);

struct SweepFlags {
  std::string spec;
  std::string out;  // empty: sweep-NAME
  int threads = 0;  // 0: every core
  bool quiet = false;
};
// `tessera sweep FILE [-o DIR]`: a design-space sweep (docs/sweep.md), serial or under mpirun.
int sweep_command(const SweepFlags& flags);

struct ValidateFlags {
  std::vector<std::string> files;  // empty: the shipped configs/validation/*.yaml
  std::string json, csv, svg;
};
// `tessera validate [FILES]`: predictions against published measurements.
int validate_command(const ValidateFlags& flags);
struct GemmFlags {
  std::vector<std::string> archs{"wse2"};
  target::GemmWork work;
  std::string fidelity = "flow";
  bool no_numerics = false;
  std::string json;
};
// `tessera gemm -M -K -N --arch ...`: one matrix product timed alone, each algorithm of each machine.
int gemm_command(GemmFlags flags);
// `tessera report RUN.json -o PAGE.html`: the self-contained HTML page of a run.
int report_command(const std::string& run_json, const std::string& output);
int models_command();
int archs_command();
int archs_area_command();

}  // namespace tessera::cli
