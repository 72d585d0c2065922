#include "tessera/ref/kernels.hpp"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace tessera::ref::kernels {

namespace {

struct RowStats {
  float mean, inv;  // mean (0 for RMSNorm) and 1 / sqrt(variance or mean square + eps)
};

RowStats row_stats(const float* x, int64_t cols, bool centered, double eps) {
  double mean = 0;
  if (centered) {
    for (int64_t c = 0; c < cols; ++c) mean += x[c];
    mean /= static_cast<double>(cols);
  }
  double var = 0;
  for (int64_t c = 0; c < cols; ++c) var += (x[c] - mean) * (x[c] - mean);
  return {static_cast<float>(mean), static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(cols) + eps))};
}

}  // namespace

void norm(const float* x, const float* gamma, const float* beta, double eps, int64_t rows, int64_t cols, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    const RowStats s = row_stats(xr, cols, beta != nullptr, eps);
    for (int64_t c = 0; c < cols; ++c) o[c] = (xr[c] - s.mean) * s.inv * gamma[c] + (beta ? beta[c] : 0.0f);
  }
}

// y = xhat * gamma (+ beta), xhat = (x - mean) * inv. With g = dy * gamma:
//   LayerNorm: dx = inv * (g - mean(g) - xhat * mean(g * xhat))
//   RMSNorm:   dx = inv * (g - xhat * mean(g * xhat))
void norm_grad(const float* x, const float* gamma, const float* dy, bool centered, double eps, int64_t rows,
               int64_t cols, float* dx) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const float* dyr = dy + r * cols;
    float* o = dx + r * cols;
    const RowStats s = row_stats(xr, cols, centered, eps);
    double sum_g = 0, sum_gx = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const float g = dyr[c] * gamma[c];
      sum_g += g;
      sum_gx += static_cast<double>(g) * ((xr[c] - s.mean) * s.inv);
    }
    const auto mean_g = centered ? static_cast<float>(sum_g / static_cast<double>(cols)) : 0.0f;
    const auto mean_gx = static_cast<float>(sum_gx / static_cast<double>(cols));
    for (int64_t c = 0; c < cols; ++c) {
      const float xhat = (xr[c] - s.mean) * s.inv;
      o[c] = s.inv * (dyr[c] * gamma[c] - mean_g - xhat * mean_gx);
    }
  }
}

void norm_scale_grad(const float* x, const float* dy, bool centered, double eps, int64_t rows, int64_t cols,
                     float* dgamma) {
  std::vector<double> sums(static_cast<size_t>(cols), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const RowStats s = row_stats(xr, cols, centered, eps);
    for (int64_t c = 0; c < cols; ++c) sums[static_cast<size_t>(c)] += dy[r * cols + c] * ((xr[c] - s.mean) * s.inv);
  }
  for (int64_t c = 0; c < cols; ++c) dgamma[c] = static_cast<float>(sums[static_cast<size_t>(c)]);
}

void gelu(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_value(x[i]);
}

void gelu_exact(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gelu_exact_value(x[i]);
}

void gelu_exact_grad(const float* x, const float* dy, int64_t n, float* dx) {
  constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    dx[i] = dy[i] * (0.5f * (1.0f + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5f * v * v));
  }
}

// d/dx 0.5 x (1 + tanh u), u = c (x + a x^3): 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2).
void gelu_grad(const float* x, const float* dy, int64_t n, float* dx) {
  constexpr float kC = 0.7978845608028654f, kA = 0.044715f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float t = fast_tanh(kC * (v + kA * v * v * v));
    dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * kC * (1.0f + 3.0f * kA * v * v));
  }
}

void silu(const float* x, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = silu_value(x[i]);
}

// d/dx x s(x) = s (1 + x (1 - s)).
void silu_grad(const float* x, const float* dy, int64_t n, float* dx) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = sigmoid(x[i]);
    dx[i] = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
  }
}

void rope_head(const float* x, const float* cos, const float* sin, int64_t head_dim, bool inverse, float* out) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float s = inverse ? -sin[i] : sin[i];
    out[i] = x[i] * cos[i] + (-x[i + half]) * s;
    out[i + half] = x[i + half] * cos[i] + x[i] * s;
  }
}

float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void split_k_matmul(const float* x, int64_t x_stride, const float* w, bool linear, int64_t rows, int64_t k, int64_t n,
                    int64_t parts, float* out, std::vector<float>& partial) {
  std::fill_n(out, rows * n, 0.0f);
  partial.resize(static_cast<size_t>(rows * n));
  const int64_t chunk = (k + parts - 1) / parts;
  for (int64_t k0 = 0; k0 < k; k0 += chunk) {
    const auto len = static_cast<blasint>(std::min(chunk, k - k0));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, linear ? CblasTrans : CblasNoTrans, static_cast<blasint>(rows),
                static_cast<blasint>(n), len, 1.0f, x + k0, static_cast<blasint>(x_stride),
                linear ? w + k0 : w + k0 * n, static_cast<blasint>(linear ? k : n), 0.0f, partial.data(),
                static_cast<blasint>(n));
    for (size_t e = 0; e < partial.size(); ++e) out[e] += partial[e];
  }
}

void route_token(const float* logits, int64_t experts, int64_t top_k, std::vector<int64_t>& order,
                 std::pair<int64_t, float>* chosen) {
  order.resize(static_cast<size_t>(experts));
  for (int64_t e = 0; e < experts; ++e) order[static_cast<size_t>(e)] = e;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  const float top = logits[order[0]];
  double sum = 0;
  for (int64_t j = 0; j < top_k; ++j) sum += std::exp(static_cast<double>(logits[order[static_cast<size_t>(j)]] - top));
  for (int64_t j = 0; j < top_k; ++j) {
    const int64_t e = order[static_cast<size_t>(j)];
    chosen[j] = {e, static_cast<float>(std::exp(static_cast<double>(logits[e] - top)) / sum)};
  }
}

}  // namespace tessera::ref::kernels
