// Weight-only precision policy: every matrix parameter (2-D) of a graph is replaced by its value
// in the chosen format; norms and biases stay fp32. The result is ordinary fp32 weights, so every
// executor (the host reference and the simulated machines) computes with exactly the same values.
#pragma once

#include <string>

#include "tessera/base/precision.hpp"
#include "tessera/ir/graph.hpp"
#include "tessera/model/weights.hpp"

namespace tessera::model {

// format: fp32, bf16, fp16, fp8_e4m3, fp8_e5m2, int8 (symmetric, round half to even, +-127),
// int4 (+-7), ternary (BitNet b1.58 absmean). `scales` (base/precision.hpp) sets how many values
// share a scale: one per matrix ("tensor"), per output channel, or per `group` inputs of a channel;
// "none" rounds float formats directly; "auto" is int8 per channel, int4 per group, ternary per
// tensor, floats none. A float scale maps the block's largest magnitude to the format's largest
// finite value. Output channels are columns of GPT-2's Conv1D [in, out] matrices and rows of
// nn.Linear [out, in] ones and of embeddings. Throws Error on an unknown format or scales, integer
// formats without scales, or a group that does not divide a matrix's input dimension.
Weights quantize_weights(const ir::Graph& graph, const Weights& weights, const std::string& format, int64_t group = 32,
                         const std::string& scales = "auto");

// Pruning of every matrix parameter (norms, biases and embeddings are kept), applied before the
// format: pattern "unstructured:D" (keep the fraction D of largest magnitudes per matrix), "N:M"
// (in each run of M inputs of an output channel keep the N largest), or "blockK:D" (tile the
// stored matrix in K x K blocks and keep the fraction D with the largest L1 norm). Ties go to the
// lower index. Throws Error on a malformed spec, a density outside (0, 1], N > M, or a block size
// that does not divide a matrix.
Weights prune_weights(const ir::Graph& graph, const Weights& weights, const std::string& spec);

}  // namespace tessera::model
