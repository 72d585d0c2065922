// The reference trainer: runs a training graph (ir/autodiff.hpp) on the host. In fp32 it is the
// numerical oracle for training, checked against PyTorch (loss, every gradient, AdamW steps), as
// the ReferenceExecutor is for inference. In mixed precision it emulates bf16/fp16 training the way
// autocast does it: the operands and results of every matrix product (linear layers, their
// gradients, attention) rounded to the format (bit-exact, base/formats.hpp) with fp32
// accumulation, everything else and the master weights and optimizer state in fp32; fp16 adds
// dynamic loss scaling.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "tessera/base/formats.hpp"
#include "tessera/ir/autodiff.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/ref/executor.hpp"

namespace tessera::ref {

// A batch of `sequences` token windows of one length, laid end to end: inputs[s * length + t] and
// the token that follows it, targets[s * length + t] (an encoder's: the token a masked input
// stood for, or ir::kIgnoredTarget where nothing was masked).
struct Batch {
  std::span<const int32_t> inputs, targets;
  int64_t sequences = 1;
};

struct StepResult {
  double loss = 0;           // mean over every token of every micro-batch
  double gradient_norm = 0;  // global L2 norm of the averaged gradient, before clipping (0 when skipped)
  bool skipped = false;      // loss scaling: a gradient overflowed, so the step left the weights alone
  double loss_scale = 1;     // the scale this step's loss was multiplied by
};

// Mixed precision. Loss scaling follows PyTorch's GradScaler: the loss is multiplied by the scale;
// a step whose gradients hold an inf or NaN is skipped and halves the scale; `growth_interval`
// steps in a row without one double it.
struct MixedPrecision {
  FloatFormat compute = FloatFormat::F32;  // operands and results of matrix products
  bool loss_scaling = false;
  double initial_loss_scale = 65536;
  int64_t growth_interval = 2000;
};

class Trainer {
 public:
  // `training` must outlive the trainer; `initial` holds every trained parameter (copied: the
  // trainer owns the fp32 master weights and the optimizer state). `partitioning`: how a machine
  // splits the matrix products' sums (k_parts and backward_parts; default: the reference's own
  // order). Throws Error on a missing parameter, a shape mismatch or a partitioning naming a
  // weight no matrix product reads.
  Trainer(const ir::TrainingGraph& training, const model::Weights& initial, MixedPrecision precision = {},
          const Partitioning& partitioning = {});

  // One optimizer step over micro-batches whose gradients are averaged (gradient accumulation):
  // forward, loss and backward per micro-batch, then the optimizer at `learning_rate`.
  StepResult step(std::span<const Batch> micro_batches, double learning_rate);
  // Forward and backward of one batch without an update; gradient(name) then holds d loss / d param.
  double compute_gradients(const Batch& batch);
  // Forward and loss only (held-out evaluation).
  double loss(const Batch& batch);

  std::span<const float> gradient(const std::string& parameter) const;
  model::Weights weights() const;  // the current parameters
  // Optimizer state by name ("<parameter>.m" / ".v" for AdamW, ".momentum" for SGD), for checkpoints.
  model::Weights optimizer_state() const;
  void load_optimizer_state(const model::Weights& state, int64_t steps_done);
  int64_t steps_done() const { return steps_; }
  // Loss scaling's state (for checkpoints): the scale and the steps since it last changed.
  double loss_scale() const { return loss_scale_; }
  int64_t steps_at_scale() const { return steps_at_scale_; }
  void set_loss_scale(double scale, int64_t steps_at_scale);

 private:
  void bind(const Batch& batch);
  void run(int begin, int end);  // nodes [begin, end)
  void run_node(size_t id);
  void attention(const ir::Node& node, size_t id);
  void attention_grad(const ir::Node& node, size_t id);
  void optimizer_update(const ir::Node& node, size_t id);
  const float* data(int node) const;
  void round_operands(const ir::Node& node);  // mixed precision: the matrix op's inputs in the format
  float* mutable_data(size_t node);

  const ir::TrainingGraph& t_;
  int64_t rows_ = 0, length_ = 0;  // this batch's rows (sequences x length) and sequence length
  int64_t counted_rows_ = 0;       // its rows whose target a loss counts (not ir::kIgnoredTarget)
  int64_t steps_ = 0;
  MixedPrecision precision_;
  double loss_scale_ = 1;
  int64_t steps_at_scale_ = 0;
  std::vector<const float*> rounded_of_node_;              // per node: its rounded copy while a matrix op reads it
  std::vector<std::vector<float>> rounded_;                // the copies
  std::map<std::string, std::vector<float>> params_;       // master weights by name
  std::vector<float*> param_of_node_;                      // per node: its master weights (Param nodes)
  std::vector<std::vector<float>> buffers_;                // per node: f32 values
  std::vector<int64_t> reduction_parts_;                   // per MatMul/Linear node: its sums' parts (1: whole)
  std::vector<float> partial_;                             // one part's products
  std::vector<std::vector<int32_t>> int_buffers_;          // per node: i32 values
  std::vector<std::vector<float>> state_a_, state_b_;      // per optimizer node: m and v, or momentum
  std::map<std::string, std::vector<float>> accumulated_;  // summed gradients over micro-batches
  std::map<size_t, std::pair<std::vector<float>, std::vector<float>>> rope_tables_;  // cos, sin
};

}  // namespace tessera::ref
