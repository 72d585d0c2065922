// What every lowering (mesh, GPU) shares: the checks on a request and how a precision policy turns
// into stored bits and performed work on a given arch.
#pragma once

#include <cmath>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/ir/model_config.hpp"

namespace tessera::compiler {

// Throws Error on an empty prompt, a negative token count, a context beyond the model's, an
// invalid policy or one the arch cannot run. Returns the context (prompt + new tokens).
inline int64_t check_request(const ir::ModelConfig& model, const arch::ArchSpec& arch, int64_t prompt_tokens,
                             int64_t max_new_tokens, const PrecisionPolicy& precision) {
  if (prompt_tokens < 1) fail("the prompt must have at least one token");
  if (max_new_tokens < 0) fail("max new tokens must be >= 0");
  const int64_t context = prompt_tokens + max_new_tokens;
  if (context > model.context_length)
    fail("{} prompt + {} new tokens exceed {}'s context of {} tokens", prompt_tokens, max_new_tokens, model.name,
         model.context_length);
  precision.validate();
  if (const Status s = arch::check_precision(arch, precision); !s) fail("{}", s.message());
  return context;
}

// How the weights of a policy are stored and multiplied on an arch (docs/precision.md).
class WeightStorage {
 public:
  WeightStorage(const arch::ArchSpec& arch, const PrecisionPolicy& precision)
      : precision_(precision),
        pattern_(parse_sparsity(precision.prune)),
        skip_(arch::skips_weight_zeros(arch, pattern_)),
        unpack_(precision.weights == precision.activations ? 0.0 : arch.core.unpack_ops_per_weight) {}

  // Bits per stored element of a matrix with k inputs: the format with its scales, compressed
  // when the arch skips the pruning pattern's zeros (otherwise the zeros are stored).
  double bits(int64_t k) const {
    const double b = storage_bits(precision_.weights, precision_.scales, precision_.group, k);
    return skip_ ? compressed_bits(pattern_, b) : b;
  }
  int64_t bytes(int64_t elements, int64_t k) const {
    return static_cast<int64_t>(std::ceil(static_cast<double>(elements) * bits(k) / 8));
  }
  // The fraction of a matrix's MACs the hardware performs.
  double mac_fraction() const { return skip_ ? pattern_.density : 1.0; }
  bool skips_zeros() const { return skip_; }
  // Extra ops per stored weight to unpack it into the MAC dtype.
  double unpack_ops() const { return unpack_; }

 private:
  PrecisionPolicy precision_;
  SparsityPattern pattern_;
  bool skip_;
  double unpack_;
};

}  // namespace tessera::compiler
