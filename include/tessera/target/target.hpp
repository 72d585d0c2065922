// One Target interface for every fabric (DESIGN.md, "One Target interface"). A Target is one
// chip of an arch: it says what it can do (capabilities, supports), compiles a workload or a
// model slice into its own plan, simulates a plan into a RunReport, and gives an executor that
// computes the plan's values. Targets are found by the arch YAML's `fabric:` name
// (target/registry.hpp); nothing outside src/target/ switches on the fabric.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <variant>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/compiler/fit.hpp"
#include "tessera/compiler/lowering.hpp"
#include "tessera/compiler/model_slice.hpp"
#include "tessera/compiler/routing.hpp"
#include "tessera/ir/graph.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/ref/executor.hpp"
#include "tessera/ref/generate.hpp"
#include "tessera/target/exchange/bsp_timing.hpp"
#include "tessera/target/mesh2d/mesh_timing.hpp"
#include "tessera/target/mesh2d/program.hpp"
#include "tessera/target/shared_memory/gpu_timing.hpp"
#include "tessera/target/training.hpp"

namespace tessera::target {

// A description as plans embed it: parsed, with its verbatim text and where it came from.
struct ModelSource {
  ir::ModelConfig config;
  std::string yaml, origin;
  // The graph to run; null: the one `config` describes (ir::build_model_graph). A graph of its own
  // must agree with `config` on its sizes (d_model, heads, vocabulary, context).
  std::shared_ptr<const ir::Graph> graph;
  // The graph lowered (compiler/lowering.hpp): built on first use and shared by the copies of
  // this source (a system compiles many slices of one model), safe to call from several threads.
  const compiler::LoweredModel& lowered() const;

  struct LoweredOnce {
    std::once_flag once;
    compiler::LoweredModel model;
  };
  std::shared_ptr<LoweredOnce> lowered_once = std::make_shared<LoweredOnce>();
};
struct ArchSource {
  arch::ArchSpec spec;
  std::string yaml, origin;
};

// How finely mesh fabrics time their collectives: Analytic (closed forms, no routing: for
// sweeps), Flow (routed flows with port contention: the default), Cycle (every wavelet, meshes up
// to 64x64). Other fabrics have one tier.
enum class Fidelity { Analytic, Flow, Cycle };

// What one chip is asked to run. Each field has one meaning on every target.
struct ChipWork {
  int64_t prompt_tokens = 16;
  int64_t max_new_tokens = 64;
  int64_t micro_batch = 1;        // requests one pass computes together (targets that batch requests)
  int64_t resident_requests = 0;  // requests whose KV caches the chip holds; 0: micro_batch
  int64_t tensor_parallel = 1;    // chips that split every layer (targets with tensor_parallel)
  // Chips that split a mixture's experts, each serving micro_batch requests with attention
  // data-parallel (targets with expert_parallel; compiler::GpuCompileOptions::expert_parallel).
  int64_t expert_parallel = 1;
  PrecisionPolicy precision;
  compiler::ModelSlice slice;  // the part of the model on this chip (targets with pipeline)
  // The tier the plan will be timed at: mesh fabrics score candidate placements with it.
  Fidelity fidelity = Fidelity::Flow;
  // Mixtures of experts (targets with mixture_of_experts): how tokens spread over the experts.
  compiler::Routing routing = compiler::Routing::Uniform;
  int64_t resident() const { return resident_requests > 0 ? resident_requests : micro_batch; }
};

// What a system may do with a target's chips (system/ chooses layouts from these).
struct Capabilities {
  bool pipeline = false;            // a model too large for one chip runs as layer slices over chips
  bool head_groups = false;         // an LM head too large for one chip may get chips of its own
  bool tensor_parallel = false;     // every layer split over a group of chips
  bool batches_requests = false;    // one pass computes a micro-batch of requests; else one request per
                                    // pass, requests in flight pipelined through the layer stages
  bool data_plane = false;          // values computed core by core from the plan's steps; else the
                                    // reference executor in the plan's arithmetic order
  bool core_heatmaps = false;       // a run draws per-core heatmaps (--heatmaps)
  bool mixture_of_experts = false;  // lowers mixture-of-experts layers (compiler::LoweredKind::Experts)
  bool expert_groups = false;       // a group of chips may split each layer's experts (ModelSlice::expert_shards)
  bool expert_parallel = false;     // experts over a group with data-parallel attention (ChipWork::expert_parallel)
};

// A compiled plan for one chip: the target's own plan behind a common face.
class Plan {
 public:
  virtual ~Plan() = default;
  virtual std::string to_json() const = 0;             // the plan file `tessera compile -o` writes
  virtual std::string describe() const { return ""; }  // what people see after compiling ("": nothing)
};

// One step of a run as every target reports it: a GPU kernel, an IPU superstep, a mesh step.
struct StepRecord {
  std::string name, op, bound;
  double seconds = 0, macs = 0;
  double bytes = 0;  // moved by the step: from HBM (GPUs), over the exchange (IPUs), over the fabric (meshes)
};

// What the fullest memory of the chip holds, against what it has.
struct MemoryUse {
  std::string resource;  // "HBM per GPU", "SRAM per tile", "SRAM per core"
  double used_bytes = 0, available_bytes = 0;
};

// One run of a plan, timed: the figures every target reports, and the target's own report.
struct MeshRun {
  std::shared_ptr<const program::Program> plan;
  sim::MeshReport report;
};
struct RunReport {
  std::string fabric, arch_name, model_name;
  std::string arch_yaml, arch_origin, model_yaml, model_origin;  // as the plan embeds them
  PrecisionPolicy precision;
  int64_t prompt_tokens = 0, generated_tokens = 0, batch = 1;  // batch: requests one pass computes
  std::vector<int32_t> prompt_ids, generated_ids;              // a run with values: its tokens
  std::vector<ref::MaskPrediction> mask_predictions;           // an encoder's run with values
  double prefill_s = 0, decode_s = 0;                          // decode: every pass after the first token
  double time_to_first_token_s = 0;
  double decode_step_s = 0;      // one decode step of one micro-batch, through the whole chip
  double decode_interval_s = 0;  // how soon the chip takes the next micro-batch (its slowest stage)
  // How soon after one micro-batch's prefill begins the chip can begin the next one's: its busiest
  // stage's share of the prompt where stages overlap (a wafer's layers), else the whole prefill.
  double prefill_interval_s = 0;
  double tokens_per_s_per_user = 0, tokens_per_s = 0;
  double energy_per_token_pj = 0;  // per generated token of one request, the whole chip
  double macs_per_token = 0;       // per generated token of one request
  double utilization = 0;          // decode MACs / (peak MAC rate x decode time)
  std::string bound;               // what decode time is mostly spent on
  MemoryUse memory;
  // In order: the steps of the prompt's last pass (all of it where the prompt is one pass), and
  // of the last decode pass.
  std::vector<StepRecord> prefill_steps, last_decode_steps;
  std::variant<MeshRun, sim::GpuReport, sim::BspReport> detail;
};

// How to simulate; each target uses what it models.
struct SimulateOptions {
  bool record_trace = false;
  Fidelity fidelity = Fidelity::Flow;
  bool link_loads = false;  // mesh fabrics: words per link over the run (heatmaps)
  std::function<void(int64_t done, int64_t total)> on_pass;
  std::map<std::string, double> activation_density;  // measured by a run with values
  std::string cycle_region;  // mesh fabrics: a stage whose collectives are timed at the cycle tier
};

// Computes a plan's values: same contract as ref::ReferenceExecutor (forward, reset, max_context).
class Executor {
 public:
  virtual ~Executor() = default;
  virtual std::span<const float> forward(std::span<const int32_t> tokens, bool last_only = false) = 0;
  virtual int64_t max_context() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual void reset() = 0;
  // Per linear layer, the share of its inputs so far that were not zero (empty where not measured).
  virtual std::map<std::string, double> activation_density() const { return {}; }
  // What the executor took of this host ("" when nothing worth saying).
  virtual std::string host_note() const { return ""; }
};

// A training step with values on one chip of an arch: the model laid out as the chip holds it
// for training (weights, gradients and optimizer state resident: small models), and the order of
// the arithmetic that layout implies, which ref::Trainer computes (ref::Partitioning: each matrix
// product's sums split as the chip's cores or tiles split them, added in their order).
struct TrainingValues {
  compiler::FitStatus status;  // failure: the step does not fit one chip; the rest is empty
  ref::Partitioning partitioning;
  std::string layout;  // for people: where the model sits and how its products are split
};

// One matrix product C[m, n] = A[m, k] x B[k, n] as a kernel of its own (`tessera gemm`): the
// component the distributed-matmul literature measures, timed alone on one chip.
struct GemmWork {
  int64_t m = 0, k = 0, n = 0;
  std::string dtype = "fp16";  // A's and B's format, the MAC dtype; products summed in the arch's accumulator
  std::string algorithm;       // one the target names in GemmOutcome; "": all of them, the fastest chosen
  int64_t cores = 0;           // mesh fabrics: the side P of the P x P grid of cores (0: the largest
                               // square); other fabrics use every core
  Fidelity fidelity = Fidelity::Flow;
  // Compute C with the algorithm's own data movement (each core multiplies what it holds) and
  // compare it with the host's product of the same operands, where the product is small enough
  // for this host (GemmOutcome::values_note says when it was not).
  bool values = true;
  uint64_t seed = 1;      // the operands: uniform in [-1, 1), rounded to dtype
  double flops() const {  // 2 m k n
    return 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n);
  }
};
// What a kernel's actions cost by the arch's energy table: its multiply-adds, its memory (SRAM, or
// a GPU's HBM) and its communication (a mesh's fabric, an IPU's exchange).
struct GemmEnergy {
  double compute_j = 0, memory_j = 0, communication_j = 0;
  double total_j() const { return compute_j + memory_j + communication_j; }
};
struct GemmAlgorithmResult {
  std::string algorithm, description;
  std::string does_not_fit;  // "": it fits; else what does not fit where, and what would
  double memory_bytes = 0;   // per core (a GPU's SM): operand tiles, their buffers and the accumulators
  double memory_available_bytes = 0;
  int64_t steps = 0;
  double compute_s = 0;        // the arithmetic of every step
  double issue_s = 0;          // of compute_s: a mesh core's vector instructions' overhead
  double communication_s = 0;  // what is not hidden behind arithmetic: fabric transfers, HBM, a launch
  double seconds = 0;
  double word_hops = 0;  // fabric traffic: 32-bit words x links crossed
  GemmEnergy energy;
  double max_abs_error = -1;  // values: largest |C - host product| (-1: not computed)
  std::string bound;          // "compute", "fabric" (a mesh's transfers), "memory" (a GPU's HBM), "exchange" (an IPU's)
};
struct GemmOutcome {
  std::string layout;          // for people: the grid of cores and the tiles each holds
  double peak_macs_per_s = 0;  // of the cores used, in the work's dtype
  double max_abs_product = 0;  // values: the largest |host product| (the scale of max_abs_error)
  std::string values_note;     // values asked for and not computed: why
  std::vector<GemmAlgorithmResult> algorithms;
  int chosen = -1;  // the fastest that fits; -1: none fits
};

class Target {
 public:
  explicit Target(ArchSource arch) : arch_(std::move(arch)) {}
  virtual ~Target() = default;
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  const arch::ArchSpec& arch() const { return arch_.spec; }
  virtual Capabilities capabilities() const = 0;
  // Whether the chip runs this precision policy (the formats its MACs, stores and KV cache take).
  Status supports(const PrecisionPolicy& policy) const { return arch::check_precision(arch_.spec, policy); }

  struct Compiled {
    compiler::FitStatus status;  // failure: the plan is empty
    std::shared_ptr<const Plan> plan;
  };
  // Throws Error on a bad request (a format the chip lacks, a context beyond the model's, a slice
  // or tensor-parallel degree the model cannot be split into); returns a FitFailure when the
  // workload does not fit.
  virtual Compiled compile(const ModelSource& model, const ChipWork& work) const = 0;
  // A plan file's text (its format checked by the registry) as this target's plan.
  virtual std::shared_ptr<const Plan> parse_plan(const std::string& text, const std::string& origin) const = 0;
  // Throws Error if `plan` is another target's.
  virtual RunReport simulate(const Plan& plan, const SimulateOptions& options = {}) const = 0;
  // An executor computing `plan`'s values with `weights` (already in the plan's precision).
  // `graph` and `weights` must outlive it.
  virtual std::unique_ptr<Executor> executor(const Plan& plan, const ir::Graph& graph, const model::Weights& weights,
                                             int64_t max_context) const = 0;
  // One training step on work.chips chips of this arch, timing-only (target/training.hpp). Throws
  // Error on a bad request (a layout the chips or the model cannot take) or where the target has
  // no training model yet; returns a FitFailure when the step does not fit.
  virtual TrainingOutcome simulate_training(const ModelSource& model, const TrainingWork& work) const;
  // One chip's training step with values, for work.global_batch sequences of work.seq tokens in
  // fp32 (work.chips must be 1). Throws Error where the target computes no training values.
  virtual TrainingValues training_values(const ModelSource& model, const TrainingWork& work) const;
  // One matrix product on this chip with each of its algorithms (GemmWork). Throws Error on a bad
  // request (a dtype the chip lacks, a grid larger than the chip, values of a product too large to
  // compute here) or where the target has no GEMM kernel model.
  virtual GemmOutcome simulate_gemm(const GemmWork& work) const;

 protected:
  ArchSource arch_;
};

}  // namespace tessera::target
