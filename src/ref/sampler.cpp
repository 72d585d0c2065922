#include <algorithm>
#include <cmath>

#include "tessera/base/error.hpp"
#include "tessera/ref/generate.hpp"

namespace tessera::ref {

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature))
    fail("temperature must be a finite number >= 0, got {}", options.temperature);
  if (options.top_k < 0) fail("top-k must be >= 0, got {}", options.top_k);
}

int32_t Sampler::pick(std::span<const float> logits) {
  TESSERA_ASSERT(!logits.empty());
  if (options_.temperature == 0.0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  order_.resize(logits.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int32_t>(i);
  size_t keep = order_.size();
  if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < keep) {
    keep = static_cast<size_t>(options_.top_k);
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(keep), order_.end(),
                      [&](int32_t a, int32_t b) {
                        return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
                               (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
                      });
  }
  double max_logit = -INFINITY;
  for (size_t i = 0; i < keep; ++i)
    max_logit = std::max(max_logit, static_cast<double>(logits[static_cast<size_t>(order_[i])]));
  std::vector<double> weights(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    weights[i] = std::exp((logits[static_cast<size_t>(order_[i])] - max_logit) / options_.temperature);
    total += weights[i];
  }
  const double u = static_cast<double>(rng_() >> 11) * 0x1p-53 * total;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += weights[i];
    if (u < acc) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace tessera::ref
