// Autoregressive generation on the reference executor: prefill the prompt, then decode one token
// at a time from the KV cache, choosing each token greedily or by seeded sampling.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tessera/base/error.hpp"
#include "tessera/ref/executor.hpp"

namespace tessera::ref {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy (argmax, lowest id on ties)
  int64_t top_k = 0;         // 0: sample from the whole vocabulary
  uint64_t seed = 0;
};

// Picks tokens from logits; deterministic for a given seed (std::mt19937_64 is fully specified).
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  int32_t pick(std::span<const float> logits);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;
};

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  std::optional<int32_t> stop_token;  // generation ends (without emitting it) on this token
  bool keep_logits = false;           // also return the logits each generated token was drawn from
};

// An encoder's answer at one [MASK] of the prompt.
struct MaskPrediction {
  int64_t position = 0;               // in the prompt's ids
  std::vector<int32_t> ids;           // the most likely tokens, most likely first (lowest id on ties)
  std::vector<double> probabilities;  // of each, by the softmax over the vocabulary
  std::vector<std::string> tokens;    // their text, where a tokenizer was at hand (else empty)
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated tokens only
  std::vector<int32_t> prompt;  // the prompt's token ids
  // With GenerationOptions::keep_logits: [tokens.size(), vocabulary] row-major, row i the logits
  // tokens[i] was sampled from (before temperature and top-k).
  std::vector<float> logits;
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;          // all decode steps after the first generated token
  std::vector<MaskPrediction> masks;  // an encoder's run: one per [MASK] of the prompt
  // The rows `logits` holds: one per generated token, or an encoder's one per mask.
  int64_t logit_rows() const { return static_cast<int64_t>(masks.empty() ? tokens.size() : masks.size()); }
};

// Throws Error, saying how many new tokens would fit, if a prompt of prompt_tokens plus
// max_new_tokens does not fit in a context of max_context positions.
void check_generation_fits(int64_t prompt_tokens, int64_t max_new_tokens, int64_t max_context);

// Runs prefill then decode on any executor with the ReferenceExecutor's interface (forward,
// reset, max_context): the host reference, or a simulated machine's data plane. Throws Error if
// prompt + max_new_tokens exceeds the executor's context. `on_token` (optional) sees each token as
// it is generated.
template <typename Executor>
GenerationResult generate(Executor& executor, std::span<const int32_t> prompt, const GenerationOptions& options,
                          const std::function<void(int32_t)>& on_token = {}) {
  if (prompt.empty()) fail("the prompt is empty; give at least one token");
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  check_generation_fits(prompt_len, options.max_new_tokens, executor.max_context());
  Sampler sampler(options.sampling);
  GenerationResult result;
  result.prompt_tokens = prompt_len;
  result.prompt.assign(prompt.begin(), prompt.end());
  // Samples the next token from `logits`, keeping them when asked.
  const auto pick = [&](std::span<const float> logits) {
    const int32_t next = sampler.pick(logits);
    if (options.keep_logits && !(options.stop_token && next == *options.stop_token))
      result.logits.insert(result.logits.end(), logits.begin(), logits.end());
    return next;
  };
  executor.reset();
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  if (options.max_new_tokens == 0) {
    executor.forward(prompt, true);
    result.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
    return result;
  }
  int32_t token = pick(executor.forward(prompt, true));
  result.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
  start = clock::now();
  while (true) {
    if (options.stop_token && token == *options.stop_token) break;
    result.tokens.push_back(token);
    if (on_token) on_token(token);
    if (static_cast<int64_t>(result.tokens.size()) == options.max_new_tokens) break;
    token = pick(executor.forward(std::span<const int32_t>(&token, 1), true));
  }
  result.decode_seconds = std::chrono::duration<double>(clock::now() - start).count();
  return result;
}

// An encoder's run on any executor: one pass over the whole prompt (every position sees every
// other), then at each position holding `mask` the `top` most likely tokens (and, with
// `keep_logits`, that position's logits, a row per mask). Throws Error if the prompt holds no
// `mask` or does not fit the executor's context.
template <typename Executor>
GenerationResult fill_masks(Executor& executor, std::span<const int32_t> prompt, int32_t mask, int64_t top = 5,
                            bool keep_logits = false) {
  if (std::find(prompt.begin(), prompt.end(), mask) == prompt.end())
    fail("an encoder fills masks: write [MASK] in the prompt where a word should be predicted");
  check_generation_fits(static_cast<int64_t>(prompt.size()), 0, executor.max_context());
  GenerationResult result;
  result.prompt.assign(prompt.begin(), prompt.end());
  result.prompt_tokens = static_cast<int64_t>(prompt.size());
  executor.reset();
  const auto start = std::chrono::steady_clock::now();
  const std::span<const float> logits = executor.forward(prompt, false);
  result.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t vocab = executor.vocab_size();
  for (size_t p = 0; p < prompt.size(); ++p) {
    if (prompt[p] != mask) continue;
    const std::span<const float> row = logits.subspan(p * static_cast<size_t>(vocab), static_cast<size_t>(vocab));
    if (keep_logits) result.logits.insert(result.logits.end(), row.begin(), row.end());
    const float peak = *std::max_element(row.begin(), row.end());
    double sum = 0;
    for (float v : row) sum += std::exp(static_cast<double>(v - peak));
    std::vector<int32_t> order(row.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    const auto n = static_cast<ptrdiff_t>(std::min<int64_t>(top, vocab));
    std::partial_sort(order.begin(), order.begin() + n, order.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    MaskPrediction m{static_cast<int64_t>(p), {order.begin(), order.begin() + n}, {}};
    for (int32_t id : m.ids) m.probabilities.push_back(std::exp(static_cast<double>(row[id] - peak)) / sum);
    result.masks.push_back(std::move(m));
  }
  return result;
}

}  // namespace tessera::ref
