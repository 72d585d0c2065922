// Autoregressive generation on the reference executor: prefill the prompt, then decode one token
// at a time from the KV cache, choosing each token greedily or by seeded sampling.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
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

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated tokens only
  std::vector<int32_t> prompt;  // the prompt's token ids
  // With GenerationOptions::keep_logits: [tokens.size(), vocabulary] row-major, row i the logits
  // tokens[i] was sampled from (before temperature and top-k).
  std::vector<float> logits;
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // all decode steps after the first generated token
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

}  // namespace tessera::ref
