#include "tessera/model/weights.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "tessera/base/error.hpp"
#include "tessera/model/safetensors.hpp"

namespace tessera::model {

void Weights::insert(const std::string& name, Tensor tensor) { tensors_[name] = std::move(tensor); }

const Tensor* Weights::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const Tensor& Weights::at(const std::string& name) const {
  const Tensor* t = find(name);
  TESSERA_ASSERT(t != nullptr);
  return *t;
}

namespace {

std::string shape_str(const std::vector<int64_t>& dims) { return ir::Shape{dims}.str(); }

// Tensors that checkpoints carry but a decoder does not need: GPT-2's causal-mask buffers, a
// duplicated tied output matrix, and precomputed RoPE frequencies.
bool is_ignorable_extra(const std::string& name) {
  auto ends_with = [&](const std::string& s) { return name.size() >= s.size() && name.ends_with(s); };
  return ends_with(".attn.bias") || ends_with(".attn.masked_bias") || ends_with("rotary_emb.inv_freq") ||
         name == "lm_head.weight";
}

}  // namespace

Weights load_weights(const ir::Graph& graph, const std::filesystem::path& path) {
  const SafetensorsFile file(path);
  Weights weights;
  std::set<std::string> used;
  for (const auto& node : graph.nodes()) {
    if (node.op != ir::OpKind::Param || weights.find(node.name)) continue;
    const SafetensorsEntry* entry = file.find(node.name);
    if (!entry) entry = file.find("transformer." + node.name);  // GPT2LMHeadModel checkpoints
    if (!entry)
      fail(
          "{}: missing tensor '{}' (expected shape {}); the file holds {} tensors — is this the checkpoint "
          "for this model config?",
          file.origin(), node.name, node.type.shape.str(), file.index().entries.size());
    if (entry->shape != node.type.shape.dims)
      fail("{}: tensor '{}' has shape {} but the model config needs {}", file.origin(), node.name,
           shape_str(entry->shape), node.type.shape.str());
    Tensor t{entry->shape, std::vector<float>(static_cast<size_t>(node.type.shape.elements()))};
    file.read_f32(*entry, t.values);
    // A NaN or infinity would flow through every executor and still print text: refuse it.
    if (const auto bad = std::find_if(t.values.begin(), t.values.end(), [](float v) { return !std::isfinite(v); });
        bad != t.values.end())
      fail("{}: tensor '{}' holds {} at element {}; the checkpoint is corrupt or was saved after a diverged step",
           file.origin(), entry->name, std::isnan(*bad) ? "NaN" : "an infinity", bad - t.values.begin());
    used.insert(entry->name);
    weights.insert(node.name, std::move(t));
  }
  std::vector<std::string> unused;
  for (const auto& e : file.index().entries)
    if (!used.contains(e.name) && !is_ignorable_extra(e.name)) unused.push_back(e.name);
  if (!unused.empty())
    fail(
        "{}: {} tensor(s) the model config does not use, e.g. '{}'; does the config (n_layers, "
        "family, tie_embeddings) match the checkpoint?",
        file.origin(), unused.size(), unused.front());
  return weights;
}

namespace {

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Weights random_weights(const ir::Graph& graph, uint64_t seed) {
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
  Weights weights;
  for (const auto& node : graph.nodes()) {
    if (node.op != ir::OpKind::Param || weights.find(node.name)) continue;
    const auto& dims = node.type.shape.dims;
    const uint64_t key = fnv1a64(node.name) ^ (seed * kGolden);
    const bool is_norm = dims.size() == 1 && node.name.ends_with(".weight") &&
                         (node.name.find("ln_") != std::string::npos || node.name.find("norm") != std::string::npos);
    float scale = 0.02f;
    if (dims.size() == 2) scale = static_cast<float>(std::sqrt(3.0 / static_cast<double>(std::min(dims[0], dims[1]))));
    Tensor t{dims, std::vector<float>(static_cast<size_t>(node.type.shape.elements()))};
    for (size_t i = 0; i < t.values.size(); ++i) {
      const uint64_t z = splitmix64_mix(key + (i + 1) * kGolden);
      const float u = static_cast<float>(z >> 40) * 0x1p-24f;
      const float v = u * 2.0f - 1.0f;
      t.values[i] = is_norm ? 1.0f + v * 0.1f : v * scale;
    }
    weights.insert(node.name, std::move(t));
  }
  return weights;
}

Weights initial_weights(const ir::Graph& graph, uint64_t seed) {
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
  std::set<int64_t> layers;
  std::set<int> residual_weights;  // Param ids of matmuls whose output is an Add's input
  for (const auto& node : graph.nodes()) {
    if (node.layer >= 0) layers.insert(node.layer);
    if (node.op != ir::OpKind::Add) continue;
    for (int in : node.inputs) {
      const ir::Node& producer = graph.node(in);
      if (producer.op == ir::OpKind::MatMul || producer.op == ir::OpKind::Linear)
        residual_weights.insert(producer.inputs[1]);
    }
  }
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(std::max<size_t>(1, layers.size())));
  Weights weights;
  for (size_t id = 0; id < graph.nodes().size(); ++id) {
    const ir::Node& node = graph.node(static_cast<int>(id));
    if (node.op != ir::OpKind::Param || weights.find(node.name)) continue;
    const auto& dims = node.type.shape.dims;
    Tensor t{dims, std::vector<float>(static_cast<size_t>(node.type.shape.elements()))};
    if (dims.size() == 1) {
      const bool is_norm = node.name.ends_with(".weight");
      std::fill(t.values.begin(), t.values.end(), is_norm ? 1.0f : 0.0f);
    } else {
      const double std = residual_weights.contains(static_cast<int>(id)) ? residual_std : 0.02;
      const auto half_width = static_cast<float>(std * std::sqrt(3.0));  // uniform(-a, a) has std a / sqrt(3)
      const uint64_t key = fnv1a64(node.name) ^ (seed * kGolden);
      for (size_t i = 0; i < t.values.size(); ++i) {
        const uint64_t z = splitmix64_mix(key + (i + 1) * kGolden);
        t.values[i] = (static_cast<float>(z >> 40) * 0x1p-24f * 2.0f - 1.0f) * half_width;
      }
    }
    weights.insert(node.name, std::move(t));
  }
  return weights;
}

}  // namespace tessera::model
