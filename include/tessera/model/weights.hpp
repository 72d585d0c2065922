// fp32 weight tensors bound to the parameters of an IR graph.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/ir/graph.hpp"

namespace tessera::model {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> values;  // row-major
};

class Weights {
 public:
  void insert(const std::string& name, Tensor tensor);
  const Tensor* find(const std::string& name) const;
  const Tensor& at(const std::string& name) const;  // asserts presence
  size_t size() const { return tensors_.size(); }

 private:
  std::unordered_map<std::string, Tensor> tensors_;
};

// Loads every parameter of `graph` from a safetensors file. Throws Error naming the tensor and
// the file on a missing tensor, a shape mismatch, an unsupported dtype, or tensors the model does
// not use (a sign that the config and the checkpoint disagree).
Weights load_weights(const ir::Graph& graph, const std::filesystem::path& path);

// Deterministic pseudo-random weights for every parameter, for models whose checkpoints we do not
// have. Element i of tensor `name` is derived from splitmix64(fnv1a64(name), seed, i); the exact
// rule is mirrored in tools/gen_reference.py so PyTorch sees bit-identical weights:
//   t = 2 * u - 1, u = (top 24 bits of the hash) / 2^24
//   norm scales ("ln_*"/"*norm*" .weight, 1-D): 1 + 0.1 t;  other 1-D (biases): 0.02 t;
//   matrices: t * sqrt(3 / min(rows, cols)).
Weights random_weights(const ir::Graph& graph, uint64_t seed);

// Weights to train from scratch, GPT-2's initialisation (Radford et al. 2019) with the same hash
// as random_weights but uniform: matrices with standard deviation 0.02, and 0.02 / sqrt(2 x layers)
// for those whose product goes straight into a residual Add (attention output, MLP down
// projection); biases 0, norm scales 1.
Weights initial_weights(const ir::Graph& graph, uint64_t seed);

// splitmix64's finalizer (Steele et al. 2014), the hash behind the weights above; also what
// `tessera train` draws its batch positions with.
uint64_t splitmix64_mix(uint64_t z);

}  // namespace tessera::model
