#include "tessera/ref/generate.hpp"

#include <algorithm>
#include <chrono>

#include "tessera/base/error.hpp"

namespace tessera::ref {

void check_generation_fits(int64_t prompt_tokens, int64_t max_new_tokens, int64_t max_context) {
  if (max_new_tokens < 0) fail("max new tokens must be >= 0, got {}", max_new_tokens);
  if (prompt_tokens > max_context)
    fail("the prompt has {} tokens but the model's context is {}; shorten the prompt", prompt_tokens, max_context);
  // The last generated token is never fed back, so the cache holds prompt + max_new - 1 tokens.
  const int64_t needed = prompt_tokens + std::max<int64_t>(max_new_tokens - 1, 0);
  if (needed > max_context)
    fail(
        "the prompt has {} tokens and {} new tokens would need {} positions, but the model's context is {}; "
        "use at most {} new tokens or a shorter prompt",
        prompt_tokens, max_new_tokens, needed, max_context, std::max<int64_t>(max_context - prompt_tokens + 1, 0));
}

GenerationResult generate(ReferenceExecutor& executor, std::span<const int32_t> prompt,
                          const GenerationOptions& options, const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail("the prompt is empty; give at least one token");
  const auto prompt_len = static_cast<int64_t>(prompt.size());
  check_generation_fits(prompt_len, options.max_new_tokens, executor.max_context());
  Sampler sampler(options.sampling);
  GenerationResult result;
  result.prompt_tokens = prompt_len;
  executor.reset();
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  if (options.max_new_tokens == 0) {
    executor.forward(prompt, true);
    result.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
    return result;
  }
  int32_t token = sampler.pick(executor.forward(prompt, true));
  result.prefill_seconds = std::chrono::duration<double>(clock::now() - start).count();
  start = clock::now();
  while (true) {
    if (options.stop_token && token == *options.stop_token) break;
    result.tokens.push_back(token);
    if (on_token) on_token(token);
    if (static_cast<int64_t>(result.tokens.size()) == options.max_new_tokens) break;
    token = sampler.pick(executor.forward(std::span<const int32_t>(&token, 1), true));
  }
  result.decode_seconds = std::chrono::duration<double>(clock::now() - start).count();
  return result;
}

}  // namespace tessera::ref
