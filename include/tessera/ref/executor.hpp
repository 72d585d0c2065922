// The host reference executor: runs an IR graph in fp32 with a KV cache. It is the numerical
// oracle every simulator is checked against, and is itself checked against PyTorch.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "tessera/base/formats.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/ir/graph.hpp"
#include "tessera/model/weights.hpp"

namespace tessera::ref {

// How a machine splits the arithmetic, which decides the order of the fp32 sums and so the last
// bits of every value (the formats are the precision policy's). Default: the reference's own order.
struct Partitioning {
  // Weight parameter name -> its k inputs split into this many equal parts, each part's products
  // summed on its own and the partial sums added in part order; separately for steps over several
  // tokens (prefill) and single-token steps (decode; empty: as prefill).
  std::map<std::string, int64_t> k_parts, k_parts_decode;
  // Training (ref::Trainer): weight name -> the input gradient's reduction (dx = dy W^T sums over
  // the forward's n outputs) split into this many parts; its forward and recomputed products
  // split k by k_parts. The weight gradient (x^T dy) is summed whole, over the rows in order.
  std::map<std::string, int64_t> backward_parts;
  // Attention: keys in blocks of this many positions, each block's max, sum of exponentials and
  // weighted values computed on its own and combined (FlashAttention, an IPU's tiles); 0: one pass.
  int64_t position_block = 0;
};

// A RoPE node's angles for positions [0, max_context): cos and sin [max_context, head_dim / 2],
// computed in double and rounded to fp32 (Llama 3.1's frequency scaling when the node has it).
struct RopeTable {
  std::vector<float> cos, sin;
};
RopeTable rope_table(const ir::Node& rope, int64_t max_context);

class ReferenceExecutor {
 public:
  // `graph` and `weights` must outlive the executor. max_context bounds the KV cache. Of
  // `precision`, the activations format rounds every input of a linear layer and the kv format
  // every key and value as it enters the cache (the weights carry their format already: see
  // model/quantize.hpp); arithmetic is fp32.
  // `partitioning` names weights of `graph`; an unknown name throws Error.
  ReferenceExecutor(const ir::Graph& graph, const model::Weights& weights, int64_t max_context,
                    const PrecisionPolicy& precision = {}, const Partitioning& partitioning = {});

  // Runs one step over `tokens` at positions [position(), position() + n) and appends their keys
  // and values to the cache. Returns logits row-major: [n, vocab], or [1, vocab] for the last token
  // only when last_only is set (what generation needs). Throws Error if the context would overflow
  // or a token id is outside the vocabulary.
  std::span<const float> forward(std::span<const int32_t> tokens, bool last_only = false);

  int64_t position() const { return position_; }
  int64_t max_context() const { return max_context_; }
  int64_t vocab_size() const { return vocab_size_; }
  void reset() { position_ = 0; }

 private:
  struct KvCache {
    std::vector<float> keys, values;  // [max_context, n_kv_heads * head_dim]
  };

  void run_node(size_t id, int64_t rows, bool last_only);
  void attention(const ir::Node& node, size_t id, int64_t rows);
  void blocked_softmax_values(const float* scores, int64_t visible, const float* values, int64_t stride, int64_t hd,
                              float* out) const;
  void rope(const ir::Node& node, size_t id, int64_t rows);
  void experts(const ir::Node& node, size_t id, int64_t rows, bool last_row_only);
  // The values of a node's i-th input: a parameter's weights, or an earlier node's buffer.
  const float* input(const ir::Node& node, size_t i) const;

  const ir::Graph& graph_;
  int64_t max_context_;
  int64_t position_ = 0;
  int64_t vocab_size_ = 0;
  FloatFormat activations_ = FloatFormat::F32, kv_ = FloatFormat::F32;
  std::vector<float> rounded_;                     // a linear layer's input in the activations format
  std::vector<const float*> params_;               // per node: weight data for Param nodes
  std::vector<std::vector<float>> buffers_;        // per node: f32 activations
  std::vector<std::vector<int32_t>> int_buffers_;  // per node: i32 inputs
  std::map<int64_t, KvCache> caches_;              // by attention layer
  std::map<size_t, RopeTable> rope_tables_;        // by rope node
  std::vector<int64_t> k_parts_, k_parts_decode_;  // per matmul node (1: unsplit)
  int64_t position_block_ = 0;
  std::vector<float> partial_;  // one part's products
};

}  // namespace tessera::ref
