#include "tessera/ref/generate.hpp"

#include <algorithm>

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

}  // namespace tessera::ref
