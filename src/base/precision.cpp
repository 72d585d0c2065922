#include "tessera/base/precision.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/core.h>

#include "tessera/base/error.hpp"

namespace tessera {

std::string SparsityPattern::capability() const {
  switch (kind) {
    case Kind::Dense:
      return "dense";
    case Kind::Unstructured:
      return "unstructured";
    case Kind::NM:
      return fmt::format("{}:{}", n, m);
    case Kind::Block:
      return fmt::format("block{}", block);
  }
  return "dense";
}

SparsityPattern parse_sparsity(const std::string& spec) {
  if (spec.empty()) return {};
  auto density = [&](const std::string& text) {
    double d = 0;
    try {
      size_t used = 0;
      d = std::stod(text, &used);
      if (used != text.size()) throw std::invalid_argument(text);
    } catch (const std::exception&) {
      fail("prune '{}': '{}' is not a number", spec, text);
    }
    if (!(d > 0 && d <= 1)) fail("prune '{}': density must be in (0, 1], got {}", spec, d);
    return d;
  };
  const size_t colon = spec.find(':');
  if (colon == std::string::npos)
    fail("prune '{}': expected unstructured:DENSITY, N:M (e.g. 2:4) or blockK:DENSITY (e.g. block16:0.5)", spec);
  const std::string head = spec.substr(0, colon), tail = spec.substr(colon + 1);
  using Kind = SparsityPattern::Kind;
  if (head == "unstructured") return {Kind::Unstructured, density(tail), 0, 0, 0, spec};
  if (head.starts_with("block")) {
    int64_t k = 0;
    try {
      size_t used = 0;
      k = std::stoll(head.substr(5), &used);
      if (used != head.size() - 5) throw std::invalid_argument(head);
    } catch (const std::exception&) {
      fail("prune '{}': expected a block size after 'block', e.g. block16:0.5", spec);
    }
    if (k < 1) fail("prune '{}': block size must be >= 1", spec);
    return {Kind::Block, density(tail), 0, 0, k, spec};
  }
  int64_t n = 0, m = 0;
  try {
    size_t used_n = 0, used_m = 0;
    n = std::stoll(head, &used_n), m = std::stoll(tail, &used_m);
    if (used_n != head.size() || used_m != tail.size()) throw std::invalid_argument(spec);
  } catch (const std::exception&) {
    fail("prune '{}': expected unstructured:DENSITY, N:M or blockK:DENSITY", spec);
  }
  if (n < 1 || m < 1 || n > m) fail("prune '{}': need 1 <= N <= M", spec);
  return {Kind::NM, static_cast<double>(n) / static_cast<double>(m), n, m, 0, spec};
}

const std::vector<std::string>& weight_formats() {
  static const std::vector<std::string> formats = {"fp32",     "bf16", "fp16", "fp8_e4m3",
                                                   "fp8_e5m2", "int8", "int4", "ternary"};
  return formats;
}

const std::vector<std::string>& activation_formats() {
  static const std::vector<std::string> formats = {"fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"};
  return formats;
}

namespace {

void check_one_of(const std::string& what, const std::string& value, const std::vector<std::string>& allowed,
                  const std::string& why = "") {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  fail("{} format '{}' is not one tessera knows; choose one of {}{}", what, value, list, why);
}

}  // namespace

void PrecisionPolicy::validate() const {
  check_one_of("weights", weights, weight_formats());
  const std::string no_integer =
      " (integer formats need a per-token scale, which tessera's activations do not compute; see docs/precision.md)";
  check_one_of("activations", activations, activation_formats(),
               activations.starts_with("int") || activations == "ternary" ? no_integer : "");
  check_one_of("kv", kv, activation_formats(), kv.starts_with("int") || kv == "ternary" ? no_integer : "");
  check_one_of("weight scales", scales, {"auto", "none", "tensor", "channel", "group"});
  if (group < 1) fail("group size must be >= 1, got {}", group);
  if (resolved_scales(weights, scales) == "none" && (weights.starts_with("int") || weights == "ternary"))
    fail("{} weights need scales; choose tensor, channel or group (or auto)", weights);
  parse_sparsity(prune);
}

std::string PrecisionPolicy::describe() const {
  const std::string sc = resolved_scales(weights, scales);
  std::string s = "weights " + weights +
                  (sc == "group"                      ? fmt::format("/g{}", group)
                   : sc == "none" || scales == "auto" ? ""
                                                      : "/" + sc);
  s += ", activations " + activations + ", kv " + kv;
  if (!prune.empty()) s += ", pruned " + prune;
  return s;
}

std::string resolved_scales(const std::string& format, const std::string& scales) {
  if (scales != "auto") return scales;
  if (format == "int8") return "channel";
  if (format == "int4") return "group";
  if (format == "ternary") return "tensor";
  return "none";
}

double storage_bits(const std::string& format, const std::string& scales, int64_t group, int64_t channel_inputs) {
  double bits = 0;
  if (format == "fp32") {
    bits = 32;
  } else if (format == "bf16" || format == "fp16") {
    bits = 16;
  } else if (format == "fp8_e4m3" || format == "fp8_e5m2" || format == "int8") {
    bits = 8;
  } else if (format == "int4") {
    bits = 4;
  } else if (format == "ternary") {
    bits = 2;
  } else {
    fail("unknown format '{}'", format);
  }
  const std::string sc = resolved_scales(format, scales);
  if (sc == "group") bits += 16.0 / static_cast<double>(std::max<int64_t>(group, 1));
  if (sc == "channel" && channel_inputs > 0) bits += 32.0 / static_cast<double>(channel_inputs);
  return bits;
}

double compressed_bits(const SparsityPattern& p, double value_bits) {
  double bits = value_bits;
  switch (p.kind) {
    case SparsityPattern::Kind::Dense:
      break;
    case SparsityPattern::Kind::Unstructured:
      bits = p.density * (value_bits + 16);
      break;
    case SparsityPattern::Kind::NM:
      bits = p.density * (value_bits + std::ceil(std::log2(static_cast<double>(p.m))));
      break;
    case SparsityPattern::Kind::Block:
      bits = p.density * (value_bits + 32.0 / static_cast<double>(p.block * p.block));
      break;
  }
  return std::min(bits, value_bits);
}

}  // namespace tessera
