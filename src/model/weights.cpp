#include "tessera/model/weights.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/model/safetensors.hpp"
#include "tessera/onnx/onnx_import.hpp"

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

// Tensors that checkpoints carry but the model does not need: GPT-2's causal-mask buffers, a
// duplicated tied output matrix (and BERT's decoder bias, a copy of cls.predictions.bias),
// precomputed RoPE frequencies and BERT's position-id buffer; and BERT's pooler and
// next-sentence head, which masked-LM inference does not run.
bool is_ignorable_extra(const std::string& name) {
  auto ends_with = [&](const std::string& s) { return name.size() >= s.size() && name.ends_with(s); };
  return ends_with(".attn.bias") || ends_with(".attn.masked_bias") || ends_with("rotary_emb.inv_freq") ||
         name == "lm_head.weight" || name == "bert.embeddings.position_ids" ||
         name.starts_with("cls.predictions.decoder.") || name.starts_with("bert.pooler.") ||
         name.starts_with("cls.seq_relationship.");
}

}  // namespace

namespace {

// The checkpoint's files: one safetensors file, or the shards a Hugging Face index
// (model.safetensors.index.json: {"weight_map": {tensor: file}}) names, opened once each.
class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& path) : origin_(path.string()) {
    if (!path.string().ends_with(".index.json")) {
      files_.push_back(std::make_unique<SafetensorsFile>(path));
      return;
    }
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(read_text_file(path));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not a safetensors index ({})", origin_, e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index.at("weight_map").is_object())
      fail("{}: a safetensors index needs a \"weight_map\" object of tensor name -> shard file", origin_);
    std::map<std::string, size_t> opened;
    for (const auto& [tensor, file] : index.at("weight_map").items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
        fail("{}: weight_map[\"{}\"] must name a shard file beside the index, got {}", origin_, tensor, file.dump());
      const std::string shard = file.get<std::string>();
      if (!opened.contains(shard)) {
        opened[shard] = files_.size();
        files_.push_back(std::make_unique<SafetensorsFile>(path.parent_path() / shard));
      }
      shard_of_[tensor] = opened.at(shard);
    }
    if (files_.empty()) fail("{}: the weight_map names no tensors", origin_);
  }

  // The entry and the file holding `name`, or nulls.
  std::pair<const SafetensorsFile*, const SafetensorsEntry*> find(const std::string& name) const {
    if (!shard_of_.empty()) {
      const auto it = shard_of_.find(name);
      if (it == shard_of_.end()) return {nullptr, nullptr};
      const SafetensorsFile& file = *files_.at(it->second);
      const SafetensorsEntry* entry = file.find(name);
      if (!entry) fail("{}: the index puts '{}' in {}, which does not hold it", origin_, name, file.origin());
      return {&file, entry};
    }
    const SafetensorsEntry* entry = files_.front()->find(name);
    return {entry ? files_.front().get() : nullptr, entry};
  }

  const std::string& origin() const { return origin_; }
  int64_t tensor_count() const {
    int64_t n = 0;
    for (const auto& f : files_) n += static_cast<int64_t>(f->index().entries.size());
    return n;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& f : files_)
      for (const auto& e : f->index().entries) out.push_back(e.name);
    return out;
  }

 private:
  std::string origin_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> shard_of_;
};

}  // namespace

namespace {

// An ONNX export's weights, raised to tessera's names (onnx/onnx_import.hpp).
Weights load_onnx_weights(const ir::Graph& graph, const std::filesystem::path& path) {
  onnx_import::ImportedModel imported = onnx_import::import_onnx(read_text_file(path), path.string());
  std::map<std::string, Tensor> tensors;
  for (auto& t : imported.tensors) tensors[t.name] = {std::move(t.shape), std::move(t.values)};
  Weights weights;
  for (const auto& node : graph.nodes()) {
    if (node.op != ir::OpKind::Param || weights.find(node.name)) continue;
    const auto it = tensors.find(node.name);
    if (it == tensors.end())
      fail("{}: the model it exports has no tensor '{}' (expected shape {}); is this the export for this model config?",
           path.string(), node.name, node.type.shape.str());
    if (it->second.shape != node.type.shape.dims)
      fail("{}: tensor '{}' has shape {} but the model config needs {}", path.string(), node.name,
           shape_str(it->second.shape), node.type.shape.str());
    weights.insert(node.name, std::move(it->second));
    tensors.erase(it);
  }
  if (!tensors.empty())
    fail(
        "{}: {} tensor(s) the model config does not use, e.g. '{}'; does the config (n_layers, family) match the "
        "export?",
        path.string(), tensors.size(), tensors.begin()->first);
  return weights;
}

}  // namespace

Weights load_weights(const ir::Graph& graph, const std::filesystem::path& path) {
  if (path.extension() == ".onnx") return load_onnx_weights(graph, path);
  const Checkpoint checkpoint(path);
  Weights weights;
  std::set<std::string> used;
  for (const auto& node : graph.nodes()) {
    if (node.op != ir::OpKind::Param || weights.find(node.name)) continue;
    auto [file, entry] = checkpoint.find(node.name);
    if (!entry) std::tie(file, entry) = checkpoint.find("transformer." + node.name);  // GPT2LMHeadModel checkpoints
    if (!entry)
      fail(
          "{}: missing tensor '{}' (expected shape {}); the checkpoint holds {} tensors — is this the checkpoint "
          "for this model config?",
          checkpoint.origin(), node.name, node.type.shape.str(), checkpoint.tensor_count());
    if (entry->shape != node.type.shape.dims)
      fail("{}: tensor '{}' has shape {} but the model config needs {}", file->origin(), node.name,
           shape_str(entry->shape), node.type.shape.str());
    Tensor t{entry->shape, std::vector<float>(static_cast<size_t>(node.type.shape.elements()))};
    file->read_f32(*entry, t.values);
    // A NaN or infinity would flow through every executor and still print text: refuse it.
    if (const auto bad = std::find_if(t.values.begin(), t.values.end(), [](float v) { return !std::isfinite(v); });
        bad != t.values.end())
      fail("{}: tensor '{}' holds {} at element {}; the checkpoint is corrupt or was saved after a diverged step",
           file->origin(), entry->name, std::isnan(*bad) ? "NaN" : "an infinity", bad - t.values.begin());
    used.insert(entry->name);
    weights.insert(node.name, std::move(t));
  }
  std::vector<std::string> unused;
  for (const auto& name : checkpoint.names())
    if (!used.contains(name) && !is_ignorable_extra(name)) unused.push_back(name);
  if (!unused.empty())
    fail(
        "{}: {} tensor(s) the model config does not use, e.g. '{}'; does the config (n_layers, "
        "family, tie_embeddings) match the checkpoint?",
        checkpoint.origin(), unused.size(), unused.front());
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
                         (node.name.find("ln_") != std::string::npos || node.name.find("norm") != std::string::npos ||
                          node.name.find("LayerNorm") != std::string::npos);
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
