// fp32 kernels shared by the reference executor (inference), the reference trainer and the
// machines' data planes (so a GELU is the same function everywhere). Row-major, `rows` x `cols`.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace tessera::ref::kernels {

// LayerNorm (beta != nullptr: centred) or RMSNorm (beta == nullptr) of each row; statistics in double.
void norm(const float* x, const float* gamma, const float* beta, double eps, int64_t rows, int64_t cols, float* out);
// dx of the same norm, given dy (recomputes the row statistics from x).
void norm_grad(const float* x, const float* gamma, const float* dy, bool centered, double eps, int64_t rows,
               int64_t cols, float* dx);
// d gamma: the column sums of dy * normalized x.
void norm_scale_grad(const float* x, const float* dy, bool centered, double eps, int64_t rows, int64_t cols,
                     float* dgamma);

// out[rows, n] = x[rows, k] W, W stored [k, n] (`linear`: [n, k], read transposed), with x's row
// stride `x_stride`; k split into `parts` chunks of ceil(k / parts) (the last shorter): each
// chunk's products summed on its own (one GEMM), the partial sums added in chunk order, as a
// machine that splits k over cores or tiles adds them. `partial` is scratch. No bias.
void split_k_matmul(const float* x, int64_t x_stride, const float* w, bool linear, int64_t rows, int64_t k, int64_t n,
                    int64_t parts, float* out, std::vector<float>& partial);

// GELU, tanh approximation (GPT-2's "gelu_new"); n elements.
void gelu(const float* x, int64_t n, float* out);
// GELU's erf form, x Phi(x) (BERT's "gelu"); n elements. Its gradient: Phi(x) + x phi(x).
void gelu_exact(const float* x, int64_t n, float* out);
void gelu_exact_grad(const float* x, const float* dy, int64_t n, float* dx);
void gelu_grad(const float* x, const float* dy, int64_t n, float* dx);
void silu(const float* x, int64_t n, float* out);
void silu_grad(const float* x, const float* dy, int64_t n, float* dx);

// exp(x) for x in [-87, 87], vectorizable (no branches, no libm): Cephes' expf polynomial after
// rounding x / ln 2 to the nearest integer n with the 1.5 * 2^23 trick; relative error ~2 ulp.
inline float fast_exp(float x) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + kRound;
  const float n = t - kRound;
  const int32_t exponent = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kRound);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((exponent + 127) << 23);
}

// tanh(x) as 1 - 2 / (exp(2x) + 1): absolute error below 2e-7 (not relative: meant for the
// 1 +- tanh of GELU), exactly +-1 beyond |x| = 10.
inline float fast_tanh(float x) {
  const float clamped = x < -10.0f ? -10.0f : (x > 10.0f ? 10.0f : x);
  return 1.0f - 2.0f / (fast_exp(2.0f * clamped) + 1.0f);
}

inline float gelu_value(float x) {
  constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
  return 0.5f * x * (1.0f + fast_tanh(kC * (x + 0.044715f * x * x * x)));
}

// GELU's erf form, x Phi(x).
inline float gelu_exact_value(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }

// 1 / (1 + exp(-x)); exp's argument kept within +-80, where sigmoid is already 0 or 1 in fp32.
inline float sigmoid(float x) {
  const float clamped = x < -80.0f ? -80.0f : (x > 80.0f ? 80.0f : x);
  return 1.0f / (1.0f + fast_exp(-clamped));
}

inline float silu_value(float x) {
  const float clamped = x < -80.0f ? -80.0f : (x > 80.0f ? 80.0f : x);
  return x / (1.0f + fast_exp(-clamped));
}

// RoPE ("rotate half") on one head of `head_dim` values with the angle's cos and sin for each of
// the first head_dim/2 dimensions; inverse: rotate by the negative angle (the gradient).
void rope_head(const float* x, const float* cos, const float* sin, int64_t head_dim, bool inverse, float* out);

float dot(const float* a, const float* b, int64_t n);

// A mixture of experts' routing of one token (Mixtral's): its top_k of `experts` by router logit,
// the lower index first among equal logits, each weighted by the softmax of the chosen logits
// (in double). Writes top_k (expert, weight) pairs, best first; `order` is scratch.
void route_token(const float* logits, int64_t experts, int64_t top_k, std::vector<int64_t>& order,
                 std::pair<int64_t, float>* chosen);

}  // namespace tessera::ref::kernels
