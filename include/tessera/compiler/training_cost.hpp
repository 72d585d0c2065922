// What one training step of a model costs, counted from its training graph (ir/autodiff.hpp): the
// FLOPs of every forward, recompute, backward and optimizer node, the parameters, and the
// activations the backward pass reads, per transformer layer and for the rest (embedding, final
// norm, LM head, loss). Every machine's training model builds on these counts.
#pragma once

#include <cstdint>
#include <vector>

#include "tessera/ir/autodiff.hpp"

namespace tessera::compiler {

// A matrix product of the training graph, per sequence: [m, k] x [k, n], `count` of them. One
// dimension holds the sequence's tokens (m for forward and input-gradient products, k for weight
// gradients); tensor parallelism divides the one `split` names: a column-parallel weight's
// outputs, a row-parallel weight's inputs (Shoeybi et al. 2019: a weight whose product feeds a
// residual add is row-parallel, every other column-parallel).
struct MatrixProduct {
  enum class Dim { M, K, N };
  int64_t m = 0, k = 0, n = 0;
  Dim tokens = Dim::M, split = Dim::N;
  bool forward = true;  // false: a backward or recomputed product
  double count = 1;
  bool same_shape(const MatrixProduct& o) const {
    return m == o.m && k == o.k && n == o.n && tokens == o.tokens && split == o.split && forward == o.forward;
  }
  double flops() const { return 2 * count * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n); }
};

struct PhaseCost {
  double forward_flops = 0, recompute_flops = 0, backward_flops = 0;  // per sequence
  double parameters = 0;
  double saved_elements = 0;     // per sequence: forward values a backward op reads (kept unless recomputed)
  double boundary_elements = 0;  // per sequence: the layer's output (what a pipeline stage sends on)
  // Per sequence: elements the ops other than matrix products and attention read and write
  // (norms, activations, RoPE, residual adds, their gradients): memory-bound work on most machines.
  double forward_elementwise = 0, backward_elementwise = 0;  // backward includes recompute
  // Of those, and of saved_elements: what ops that see a token's whole hidden state read and write
  // or keep (norms, residual adds, their gradients). Tensor parallelism without sequence
  // parallelism runs these on every chip of the group (Korthikanti et al. 2022, Section 4.2.2).
  double forward_whole_rows = 0, backward_whole_rows = 0, saved_whole_rows = 0;
  // Per sequence: activation elements every op reads and writes (parameters not counted), and the
  // number of ops: what a machine that spreads each op over many cores exchanges between them.
  double forward_moved = 0, backward_moved = 0;
  int64_t forward_ops = 0, backward_ops = 0;
  // Per sequence: attention's query-key pairs over all heads (causal, as the graph's kernels count
  // them, or an encoder's every pair: then `bidirectional`) scored by the forward pass, by its recompute (full
  // recompute), by attention gradients that score again (selective recompute), and by the gradients; attention's FLOPs
  // forward and backward (backward includes recompute). What a kernel that keeps the scores in memory moves.
  double forward_attention_pairs = 0, recompute_attention_pairs = 0, rescored_attention_pairs = 0;
  double backward_attention_pairs = 0;
  double forward_attention_flops = 0, backward_attention_flops = 0;
  bool bidirectional = false;
  // The weight products among the FLOPs above, one entry per distinct shape (counted).
  std::vector<MatrixProduct> products;
  double flops() const { return forward_flops + recompute_flops + backward_flops; }
  // Adds every count of `other` (a stage of several layers, or a whole model) except
  // boundary_elements, which belongs to one layer.
  void add(const PhaseCost& other);
  void add_product(const MatrixProduct& p);
};

struct TrainingCost {
  int64_t seq = 0;
  std::vector<PhaseCost> layers;  // by layer index
  PhaseCost outside;              // embedding, final norm, LM head, loss
  double optimizer_flops = 0;     // per step, all parameters
  PhaseCost total() const;
  // 2 x MACs of forward + backward (no recompute) per sequence: what MFU counts.
  double model_flops() const;
};

// Counts for sequences of `seq` tokens (attention's cost grows with it).
TrainingCost training_cost(const ir::TrainingGraph& training, int64_t seq);

}  // namespace tessera::compiler
