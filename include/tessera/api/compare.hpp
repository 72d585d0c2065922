// `compare` as a library request: one model on several machines and systems, timing from the
// system model, and optionally each single chip's greedy tokens checked against the reference.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/base/precision.hpp"
#include "tessera/report/compare.hpp"

namespace tessera::api {

struct CompareRequest {
  std::string model = "default";                      // name, config file or model directory
  std::vector<std::string> machines;                  // presets or systems COUNTxPRESET ("4xwse3")
  int64_t prompt_tokens = 128, max_new_tokens = 128;  // per request
  std::vector<int64_t> batches = {1};                 // concurrent requests over the whole system
  bool sweep = false;           // batch 1, 2, 4, ... up to 1,024, until the requests no longer fit
  int64_t tensor_parallel = 0;  // chips with tensor parallelism: the group size; 0 picks the smallest that fits
  // GPUs: a mixture's experts over groups of this many, attention data-parallel; 0: the faster of
  // that and the tensor-parallel layout (system::Workload::expert_parallel).
  int64_t expert_parallel = 0;
  PrecisionPolicy precision;
  compiler::Routing routing = compiler::Routing::Uniform;  // mixtures of experts: how tokens spread
  bool numerics = false;  // also generate greedily with values on every single chip and check the tokens
  std::string weights;    // for numerics: a safetensors file, "random", or "" for the shipped weights
  uint64_t seed = 0;      // for numerics: the prompt's token ids and random weights
};

// A row per machine and batch (a sweep stops at the first batch that does not fit).
std::vector<report::CompareRow> compare(const CompareRequest& request);

}  // namespace tessera::api
