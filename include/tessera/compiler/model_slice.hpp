// The part of a model one chip of a pipeline runs.
#pragma once

#include <cstdint>

#include "tessera/ir/model_config.hpp"

namespace tessera::compiler {

// `layers` consecutive transformer layers, the token embedding on the pipeline's first chip and
// the LM head on its last; an LM head too large for one chip can be split by vocabulary over
// `head_shards` chips of its own (layers = 0), which all take the same input. A mixture of
// experts' layers can be run by a group of `expert_shards` chips (expert parallelism): each holds
// every layer's other weights and 1 / expert_shards of its experts (expert e on chip e % shards),
// all take the same input and run the other ops alike, and the group allreduces each layer's
// experts' outputs over its links. The default is the whole model on one chip.
struct ModelSlice {
  int64_t layers = -1;  // -1: all of the model's layers
  bool embedding = true;
  bool lm_head = true;
  int64_t head_shards = 1;    // this chip holds 1 / head_shards of the LM head's vocabulary
  int64_t expert_shards = 1;  // this chip holds 1 / expert_shards of each layer's experts
  int64_t layer_count(const ir::ModelConfig& m) const { return layers < 0 ? m.n_layers : layers; }
  bool whole(const ir::ModelConfig& m) const {
    return layer_count(m) == m.n_layers && embedding && lm_head && expert_shards == 1;
  }
};

}  // namespace tessera::compiler
