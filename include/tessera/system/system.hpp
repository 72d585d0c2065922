// Systems of chips: N chips of one arch joined by their chip-to-chip links, serving a batch of
// requests. It composes the per-chip compilers and timing models (docs/systems.md):
//   - mesh2d and exchange chips: the fewest chips whose layer slices fit form a pipeline (layers
//     split evenly; embedding on the first chip, LM head on the last); activations cross the
//     links between them. Requests in flight overlap across pipeline stages.
//   - shared_memory chips (GPUs, Trainium): a tensor-parallel group (--tp, or the smallest that
//     fits), with its allreduces on the links; or, for a mixture of experts with --ep, an
//     expert-parallel group (attention data-parallel, all-to-all between the experts' GPUs).
//   - the chips left over form data-parallel replicas, each serving its share of the batch.
// Depends on compiler and sim; neither depends on it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/compiler/fit.hpp"
#include "tessera/ir/model_config.hpp"
#include "tessera/target/target.hpp"

namespace tessera::system {

struct Machine {
  arch::ArchSpec arch;
  std::string arch_yaml, arch_origin;
  int64_t chips = 1;
};

struct Workload {
  ir::ModelConfig model;
  std::string model_yaml, model_origin;
  int64_t prompt_tokens = 128, max_new_tokens = 128;
  int64_t batch = 1;            // concurrent requests over the whole system
  int64_t tensor_parallel = 0;  // GPUs: the group size; 0 picks the smallest that fits
  // GPUs: a mixture's experts over groups of this many, attention data-parallel; 0 (with
  // tensor_parallel 0): whichever of the tensor-parallel layout and expert groups is faster.
  int64_t expert_parallel = 1;
  PrecisionPolicy precision;
  target::Fidelity fidelity = target::Fidelity::Flow;      // mesh fabrics: how finely collectives are timed
  compiler::Routing routing = compiler::Routing::Uniform;  // mixtures of experts (compiler/routing.hpp)
};

struct Result {
  bool fits = false;
  std::string note;                                 // why it does not run, when it does not
  std::optional<compiler::FitFailure> fit_failure;  // when that is a chip the model does not fit
  int64_t chips_used = 0, pipeline = 1, tensor = 1, replicas = 1;
  std::string mapping;                                 // "1 chip", "pipeline 4", "tensor 2 x data 4", ...
  double time_to_first_token_s = 0;                    // of a request at the head of the queue
  double tokens_per_s_per_user = 0, tokens_per_s = 0;  // decode rates
  // Generated tokens of the whole batch over the time to serve it, prompts included: the batch
  // arrives at once, its prompts run, then its decode steps.
  double served_tokens_per_s = 0;
  double energy_per_token_j = 0;  // all chips and links, per generated token
  double utilization = 0;         // decode MACs / (peak MAC rate of the chips used x decode time)
  std::string bound;              // what the slowest chip's decode time is mostly spent on, or "link"
};

// Throws Error on bad requests (a context beyond the model's, a TP degree that does not divide the
// heads); a system that cannot run the request (too small, a format it lacks, --tp on a pipeline
// chip) is a Result with fits = false and a note.
Result evaluate(const Machine& machine, const Workload& work);

// "4xwse3" -> {4, "wse3"}; a plain name is one chip. Throws Error on "0xwse3" or "x".
std::pair<int64_t, std::string> parse_machine_name(const std::string& text);

}  // namespace tessera::system
