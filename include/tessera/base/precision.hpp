// The precision and sparsity policy of a run: the format of the weights, of the activations that
// enter every linear layer, and of the KV cache, plus an optional weight-pruning pattern. Every
// executor applies the same policy with the same rounding (base/formats.hpp), so a simulated
// machine adds no error of its own; the compiler turns it into bytes and cycles (docs/precision.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

// A weight-pruning pattern, parsed from "unstructured:D", "N:M" or "blockK:D".
struct SparsityPattern {
  enum class Kind { Dense, Unstructured, NM, Block } kind = Kind::Dense;
  double density = 1;  // fraction of weights kept, in (0, 1]
  int64_t n = 0, m = 0, block = 0;
  std::string spec;  // as written ("" when dense)

  bool dense() const { return kind == Kind::Dense; }
  // The capability name an arch declares for this pattern: "unstructured", "2:4", "block16".
  std::string capability() const;
};

// Throws Error with the accepted forms on a malformed spec, a density outside (0, 1], N > M or a
// block size < 1; "" is dense.
SparsityPattern parse_sparsity(const std::string& spec);

struct PrecisionPolicy {
  std::string weights = "fp32";      // fp32 bf16 fp16 fp8_e4m3 fp8_e5m2 int8 int4 ternary
  int64_t group = 32;                // inputs per scale with scales "group"
  std::string activations = "fp32";  // fp32 bf16 fp16 fp8_e4m3 fp8_e5m2: linear-layer inputs, the MAC dtype
  std::string kv = "fp32";           // fp32 bf16 fp16 fp8_e4m3 fp8_e5m2
  std::string prune;                 // "" or a SparsityPattern spec, applied before the weight format
  // Weight scales: none (plain rounding; float formats only), tensor, channel (per output
  // channel), group (per `group` inputs of a channel), or auto: the format's usual choice (see
  // resolved_scales).
  std::string scales = "auto";

  // One format for weights, activations and the KV cache (what --dtype sets).
  static PrecisionPolicy uniform(const std::string& format) { return {format, 32, format, format, "", "auto"}; }

  // Throws Error naming the field and the accepted values.
  void validate() const;
  // "weights int4/g32, activations fp16, kv fp8_e4m3, pruned 2:4"
  std::string describe() const;
};

const std::vector<std::string>& weight_formats();      // every format weights may take
const std::vector<std::string>& activation_formats();  // every format activations and the KV cache may take

// "auto" resolved: int8 per channel, int4 per group, ternary per tensor (BitNet's absmean), float
// formats none; any other value is returned as is.
std::string resolved_scales(const std::string& format, const std::string& scales);

// Bits one stored element of `format` takes, including its share of the scales: an fp16 scale per
// group of `group` inputs, an fp32 scale per output channel of `channel_inputs` inputs (0: not
// counted), nothing for one scale per tensor. Ternary codes take 2 bits (four per byte).
double storage_bits(const std::string& format, const std::string& scales = "auto", int64_t group = 32,
                    int64_t channel_inputs = 0);

// Bits per element of a pruned matrix stored compressed: unstructured as (value, 16-bit index)
// pairs of the kept weights; N:M as the N values per group of M plus ceil(log2 M) bits of position
// each (NVIDIA's 2:4 metadata); KxK blocks as the kept blocks plus a 32-bit index per block. Never
// more than the dense size: a pattern that would not save space is stored dense.
double compressed_bits(const SparsityPattern& pattern, double value_bits);

}  // namespace tessera
