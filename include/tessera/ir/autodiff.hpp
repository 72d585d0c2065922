// Training is the same graph, differentiated: build_training_graph() copies a forward graph, adds
// the cross-entropy loss, generates the backward ops in reverse order and appends one optimizer
// update per parameter. The reference trainer (ref/trainer.hpp) runs the result; the targets' training
// models cost it op by op.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tessera/ir/graph.hpp"

namespace tessera::ir {

enum class Recompute {
  None,       // every activation the backward pass reads is kept from the forward pass
  Selective,  // attention's scores and probabilities are recomputed in its backward op (Korthikanti
              // et al. 2022); everything else is kept
  Full,       // only each layer's input is kept; the layer's forward ops run again before its backward
};
Recompute parse_recompute(const std::string& name);  // "none", "selective", "full"; throws Error
const char* recompute_name(Recompute recompute);

enum class OptimizerKind { AdamW, Sgd };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::AdamW;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;  // AdamW
  double momentum = 0.9;                         // SGD
  double weight_decay = 0.1;                     // decoupled (AdamW) or L2 (SGD); applied to matrices only, not to
                                                 // norm scales and biases (GPT-2/Llama practice)
  double clip_norm = 1.0;                        // clip gradients to this global L2 norm; 0: no clipping
};

struct TrainingOptions {
  OptimizerOptions optimizer;
  Recompute recompute = Recompute::None;
};

// A training step as one graph. Extra inputs beside the forward graph's: "targets" (i32[seq], the
// next token of each row), "loss_scale" (f32[1]: the loss gradient's seed, 1 / micro-batches,
// times the fp16 loss scale), "learning_rate" (f32[1]) and "step" (i32[1], 1-based, AdamW's bias
// correction). Nodes carry their Phase; optimizer nodes come last.
struct TrainingGraph {
  Graph graph;
  TrainingOptions options;
  int loss = -1;                         // CrossEntropy node, f32[1]
  int logits = -1;                       // the forward graph's output
  std::vector<std::string> parameters;   // every trained parameter, in graph order
  std::map<std::string, int> gradients;  // parameter -> the node holding its whole gradient
  std::map<std::string, int> updates;    // parameter -> its optimizer node (output: new value)
  int optimizer_begin = 0;               // first optimizer-phase node (grad-norm scale or update)
};

// Throws Error when the forward graph has an op autodiff cannot differentiate, or slices that do
// not tile their input.
TrainingGraph build_training_graph(const Graph& forward, const TrainingOptions& options = {});

}  // namespace tessera::ir
