// Perplexity of a model on a token sequence, on any executor with the ReferenceExecutor's
// interface. The sequence is cut into consecutive, non-overlapping windows of `window` tokens;
// in each, every token after the first is scored by the logits of the tokens before it.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <span>

#include "tessera/base/error.hpp"

namespace tessera::ref {

struct Perplexity {
  double mean_nll = 0;  // nats per scored token
  double perplexity = 0;
  int64_t tokens_scored = 0;
  int64_t windows = 0;
};

template <typename Executor>
Perplexity evaluate_perplexity(Executor& executor, std::span<const int32_t> tokens, int64_t window,
                               const std::function<void(int64_t, int64_t)>& on_window = {}) {
  if (window < 2) fail("the evaluation window must hold at least 2 tokens, got {}", window);
  if (static_cast<int64_t>(tokens.size()) < 2) fail("the text has {} tokens; need at least 2", tokens.size());
  const auto vocab = static_cast<size_t>(executor.vocab_size());
  const auto n = static_cast<int64_t>(tokens.size());
  const int64_t windows = (n + window - 1) / window;
  Perplexity p;
  double total = 0;
  for (int64_t start = 0; start < n; start += window) {
    const int64_t len = std::min(window, n - start);
    if (len < 2) break;
    executor.reset();
    const auto logits = executor.forward(tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(len)));
    for (int64_t i = 0; i + 1 < len; ++i) {
      const auto row = logits.subspan(static_cast<size_t>(i) * vocab, vocab);
      double peak = row[0];
      for (float v : row) peak = std::max(peak, static_cast<double>(v));
      double sum = 0;
      for (float v : row) sum += std::exp(static_cast<double>(v) - peak);
      const int32_t next = tokens[static_cast<size_t>(start + i + 1)];
      total += std::log(sum) + peak - static_cast<double>(row[static_cast<size_t>(next)]);
      ++p.tokens_scored;
    }
    ++p.windows;
    if (on_window) on_window(p.windows, windows);
  }
  p.mean_nll = total / static_cast<double>(p.tokens_scored);
  p.perplexity = std::exp(p.mean_nll);
  return p;
}

}  // namespace tessera::ref
