// `run` and `eval` as library requests with named fields: a model on a machine (or the host
// reference), with values or timing-only. They never print; text and progress go to callbacks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/base/precision.hpp"
#include "tessera/ref/eval.hpp"
#include "tessera/ref/generate.hpp"
#include "tessera/target/target.hpp"

namespace tessera::api {

struct RunRequest {
  std::string model = "default";  // name, config file or model directory
  std::string arch = "wse2";      // a preset or arch file, or "host" for the reference executor
  std::string weights;            // safetensors file, "random" (seeded), or "" for the shipped weights
  std::string tokenizer_dir;      // GPT-2 encoder.json + vocab.bpe; "" for the model's own
  std::string prompt;             // text, with values; its token count, timing-only
  int64_t prompt_tokens = 0;      // timing-only: the prompt length instead of the prompt's
  int64_t max_new_tokens = 64;
  ref::SamplingOptions sampling;
  bool values = true;           // false: timing and energy only, no tensor values
  bool keep_logits = false;     // with values: the generation's logits (RunResult.generation.logits)
  int64_t batch = 1;            // requests one pass computes together (targets that batch requests)
  int64_t tensor_parallel = 1;  // chips splitting every layer (targets with tensor parallelism)
  int64_t expert_parallel = 1;  // chips splitting a mixture's experts, each with `batch` requests (GPUs)
  PrecisionPolicy precision;
  compiler::Routing routing = compiler::Routing::Uniform;  // mixtures of experts, timing-only
  target::SimulateOptions simulate;                        // trace, fabric model, link loads, progress
};

struct RunResult {
  ref::GenerationResult generation;         // with values: the tokens and the host's wall time
  std::optional<target::RunReport> report;  // on a machine: the simulated run
  std::string host_note;                    // what the executor took of the host ("" when nothing)
  double values_wall_s = 0;                 // host time spent computing values
};

// Throws Error on a bad request (a flag the machine does not support, a model that does not fit,
// with what overflowed and what would fit). `on_text` sees the prompt, then each generated token's
// bytes as it is produced.
RunResult run(const RunRequest& request, const std::function<void(std::string_view)>& on_text = {});

struct EvalRequest {
  std::string model = "default", arch = "host", weights, tokenizer_dir;
  uint64_t seed = 0;  // for random weights
  std::string text_path;
  int64_t window = 0;  // tokens per window; 0: the model's context
  PrecisionPolicy precision;
};

struct EvalResult {
  ref::Perplexity perplexity;
  std::string model_name;
  int64_t window = 0;
};

// Perplexity of the model on a text file, computed by the machine's executor (or the host's).
EvalResult eval(const EvalRequest& request, const std::function<void(int64_t done, int64_t total)>& on_window = {});

}  // namespace tessera::api
