#include "tessera/ir/model_config.hpp"

#include "tessera/onnx/onnx_import.hpp"

#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/config/yaml_reader.hpp"
#include "tessera/ir/graph.hpp"

namespace tessera::ir {

const char* family_name(ModelFamily family) {
  switch (family) {
    case ModelFamily::Gpt2:
      return "gpt2";
    case ModelFamily::Llama:
      return "llama";
    case ModelFamily::Bert:
      return "bert";
  }
  return "?";
}

namespace {

int64_t positive(const config::YamlMap& map, const std::string& key) {
  const int64_t value = map.integer(key);
  if (value <= 0) fail("{}: must be a positive integer, got {}", map.where(key), value);
  return value;
}

int64_t at_most(const config::YamlMap& map, const std::string& key, int64_t limit) {
  const int64_t value = positive(map, key);
  if (value > limit)
    fail("{}: {} is larger than any model tessera simulates ({} at most); is it a typo?", map.where(key), value, limit);
  return value;
}

}  // namespace

namespace {

// A Hugging Face directory's files: the weights (the index of a sharded checkpoint first) and a
// GPT-2 style tokenizer under either of its names, a tokenizer.json, or BERT's WordPiece vocab.txt
// (lower-cased unless tokenizer_config.json says "do_lower_case": false, BertTokenizer's
// default); "" where absent.
struct HfFiles {
  std::string weights, encoder, merges, tokenizer_json, wordpiece;
  bool lowercase = true;
};
HfFiles hf_files(const std::filesystem::path& dir) {
  std::error_code ec;
  const auto has = [&](const char* f) { return !dir.empty() && std::filesystem::exists(dir / f, ec); };
  HfFiles files;
  files.weights = has("model.safetensors.index.json") ? "model.safetensors.index.json"
                  : has("model.safetensors")          ? "model.safetensors"
                                                      : "";
  if (has("vocab.json") && has("merges.txt")) files.encoder = "vocab.json", files.merges = "merges.txt";
  if (has("encoder.json") && has("vocab.bpe")) files.encoder = "encoder.json", files.merges = "vocab.bpe";
  if (files.encoder.empty() && has("tokenizer.json")) files.tokenizer_json = "tokenizer.json";
  if (files.encoder.empty() && files.tokenizer_json.empty() && has("vocab.txt")) {
    files.wordpiece = "vocab.txt";
    if (has("tokenizer_config.json")) {
      const std::string where = (dir / "tokenizer_config.json").string();
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(read_text_file(dir / "tokenizer_config.json"));
      } catch (const nlohmann::json::exception& e) {
        fail("{}: not valid JSON ({})", where, e.what());
      }
      if (j.is_object() && j.contains("do_lower_case")) {
        if (!j.at("do_lower_case").is_boolean()) fail("{}: field 'do_lower_case' must be true or false", where);
        files.lowercase = j.at("do_lower_case").get<bool>();
      }
    }
  }
  return files;
}

}  // namespace

std::string onnx_config_yaml(const std::string& bytes, const std::string& origin,
                             const std::filesystem::path& base_dir) {
  const onnx_import::ImportedModel imported = onnx_import::import_onnx(bytes, origin);
  const std::filesystem::path file(origin);
  std::string yaml = fmt::format("name: {}\n{}weights: {}\n", file.stem().string(), onnx_import::shape_yaml(imported),
                                 file.filename().string());
  // A tokenizer beside the file, as in a Hugging Face directory.
  const HfFiles files = hf_files(base_dir);
  if (!files.encoder.empty())
    yaml += fmt::format("tokenizer: {{encoder: {}, merges: {}}}\n", files.encoder, files.merges);
  if (!files.tokenizer_json.empty()) yaml += fmt::format("tokenizer: {{json: {}}}\n", files.tokenizer_json);
  return yaml;
}

ModelConfig parse_model_config(const std::string& text, const std::string& origin,
                               const std::filesystem::path& base_dir) {
  if (origin.ends_with(".onnx"))
    return parse_model_config(onnx_config_yaml(text, origin, base_dir), onnx_yaml_origin(origin), base_dir);
  if (origin.ends_with(".json")) {
    const HfFiles files = hf_files(base_dir);
    const std::filesystem::path dir = std::filesystem::path(origin).parent_path();
    const std::string name = dir.filename().empty() ? "model" : dir.filename().string();
    std::string yaml =
        hf_config_yaml(text, origin, name, files.weights, files.encoder, files.merges, files.tokenizer_json);
    if (!files.wordpiece.empty())
      yaml += fmt::format("tokenizer: {{vocab: {}, lowercase: {}}}\n", files.wordpiece, files.lowercase);
    return parse_model_config(yaml, origin + " (as tessera's model keys)", base_dir);
  }
  const auto map = config::YamlMap::parse_string(text, origin);
  ModelConfig c;
  c.name = map.string("name");
  const std::string family = map.string("family");
  if (family == "gpt2") {
    c.family = ModelFamily::Gpt2;
  } else if (family == "llama") {
    c.family = ModelFamily::Llama;
  } else if (family == "bert") {
    c.family = ModelFamily::Bert;
  } else {
    fail("{}: unknown family '{}'; expected gpt2, llama or bert", map.where("family"), family);
  }
  // Limits with headroom over the largest published models (Llama 3.1 405B: 126 layers, d_model
  // 16,384, d_ff 53,248, 128 heads, vocab 128,256, context 131,072), so that every shape and
  // parameter count stays far inside 64 bits and a typo cannot make a run take hours.
  c.vocab_size = at_most(map, "vocab_size", int64_t{1} << 22);
  c.context_length = at_most(map, "context_length", int64_t{1} << 24);
  c.d_model = at_most(map, "d_model", int64_t{1} << 17);
  c.n_layers = at_most(map, "n_layers", int64_t{1} << 12);
  c.n_heads = at_most(map, "n_heads", int64_t{1} << 12);
  c.n_kv_heads = map.has("n_kv_heads") ? at_most(map, "n_kv_heads", int64_t{1} << 12) : c.n_heads;
  c.d_ff = at_most(map, "d_ff", int64_t{1} << 19);
  c.norm_eps = map.number("norm_eps");
  if (c.norm_eps <= 0) fail("{}: must be > 0, got {}", map.where("norm_eps"), c.norm_eps);
  c.tie_embeddings = map.boolean("tie_embeddings");
  c.source = map.optional_string("source").value_or("");
  if (c.d_model % c.n_heads != 0)
    fail("{}: d_model {} is not divisible by n_heads {}", map.where("n_heads"), c.d_model, c.n_heads);
  if (c.n_heads % c.n_kv_heads != 0)
    fail("{}: n_heads {} is not a multiple of n_kv_heads {}", map.where("n_kv_heads"), c.n_heads, c.n_kv_heads);
  if (c.family != ModelFamily::Bert && map.has("type_vocab_size"))
    fail("{}: token types are BERT's; {} models have none", map.where("type_vocab_size"), family);
  if (c.family != ModelFamily::Llama) {
    const char* who = c.family == ModelFamily::Gpt2 ? "GPT-2" : "BERT";
    for (const char* key : {"n_experts", "experts_per_token"})
      if (map.has(key))
        fail("{}: {} models have dense MLPs; mixtures of experts are Llama-family", map.where(key), who);
    if (c.n_kv_heads != c.n_heads)
      fail("{}: {} uses multi-head attention; n_kv_heads must equal n_heads ({})", map.where("n_kv_heads"), who,
           c.n_heads);
    if (!c.tie_embeddings)
      fail("{}: {} ties its input and output embeddings; set tie_embeddings: true", map.where("tie_embeddings"), who);
    if (c.family == ModelFamily::Bert) {
      c.type_vocab_size = at_most(map, "type_vocab_size", int64_t{1} << 10);
      const std::string head = map.optional_string("head").value_or("masked_lm");
      if (head != "masked_lm" && head != "question_answering")
        fail("{}: unknown head '{}'; expected masked_lm or question_answering", map.where("head"), head);
      c.head = head == "masked_lm" ? ModelConfig::EncoderHead::MaskedLm : ModelConfig::EncoderHead::QuestionAnswering;
    } else if (map.has("head")) {
      fail("{}: a head is chosen for BERT encoders; {} models end in their LM head", map.where("head"), who);
    }
  } else {
    c.rope_theta = map.number("rope_theta");
    if (c.rope_theta <= 1) fail("{}: must be > 1, got {}", map.where("rope_theta"), c.rope_theta);
    if (c.head_dim() % 2 != 0)
      fail("{}: RoPE needs an even head dimension, got {}", map.where("n_heads"), c.head_dim());
    if (map.has("rope_scaling")) {
      const auto s = map.map("rope_scaling");
      RopeScaling r;
      r.factor = s.number("factor");
      r.low_freq_factor = s.number("low_freq_factor");
      r.high_freq_factor = s.number("high_freq_factor");
      r.original_context_length = positive(s, "original_context_length");
      if (r.factor < 1 || r.low_freq_factor <= 0 || r.high_freq_factor <= r.low_freq_factor)
        fail("{}: need factor >= 1 and 0 < low_freq_factor < high_freq_factor", map.where("rope_scaling"));
      s.finish();
      c.rope_scaling = r;
    }
    if (map.has("n_experts") || map.has("experts_per_token")) {
      c.n_experts = at_most(map, "n_experts", kMaxExperts);
      c.experts_per_token = positive(map, "experts_per_token");
      if (c.experts_per_token > c.n_experts)
        fail("{}: {} experts per token of {} experts; at most n_experts", map.where("experts_per_token"),
             c.experts_per_token, c.n_experts);
    }
  }
  if (map.has("weights")) c.weights_path = base_dir / map.string("weights");
  if (map.has("tokenizer")) {
    const auto t = map.map("tokenizer");
    if (t.has("json")) {
      c.tokenizer_json_path = base_dir / t.string("json");
    } else if (t.has("vocab")) {
      c.wordpiece_path = base_dir / t.string("vocab");
      c.lowercase = t.has("lowercase") && t.boolean("lowercase");
    } else {
      c.encoder_path = base_dir / t.string("encoder");
      c.merges_path = base_dir / t.string("merges");
    }
    t.finish();
  }
  map.finish();
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& path) {
  return parse_model_config(read_text_file(path), path.string(), path.parent_path());
}

std::string model_config_yaml(const ModelConfig& c, const std::string& weights_file, const std::string& encoder_file,
                              const std::string& merges_file) {
  std::string out = fmt::format(
      "name: {}\nfamily: {}\nvocab_size: {}\ncontext_length: {}\nd_model: {}\nn_layers: {}\nn_heads: {}\n"
      "n_kv_heads: {}\nd_ff: {}\nnorm_eps: {}\ntie_embeddings: {}\n",
      c.name, family_name(c.family), c.vocab_size, c.context_length, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads,
      c.d_ff, c.norm_eps, c.tie_embeddings ? "true" : "false");
  if (c.family == ModelFamily::Llama) out += fmt::format("rope_theta: {}\n", c.rope_theta);
  if (c.n_experts > 0) out += fmt::format("n_experts: {}\nexperts_per_token: {}\n", c.n_experts, c.experts_per_token);
  if (c.family == ModelFamily::Bert)
    out += fmt::format("type_vocab_size: {}\nhead: {}\n", c.type_vocab_size,
                       c.head == ModelConfig::EncoderHead::MaskedLm ? "masked_lm" : "question_answering");
  if (c.rope_scaling)
    out += fmt::format(
        "rope_scaling: {{factor: {}, low_freq_factor: {}, high_freq_factor: {}, original_context_length: {}}}\n",
        c.rope_scaling->factor, c.rope_scaling->low_freq_factor, c.rope_scaling->high_freq_factor,
        c.rope_scaling->original_context_length);
  if (!weights_file.empty()) out += fmt::format("weights: {}\n", weights_file);
  if (!encoder_file.empty() && merges_file.empty())
    out += encoder_file.ends_with(".txt")
               ? fmt::format("tokenizer: {{vocab: {}, lowercase: {}}}\n", encoder_file, c.lowercase ? "true" : "false")
               : fmt::format("tokenizer: {{json: {}}}\n", encoder_file);
  if (!encoder_file.empty() && !merges_file.empty())
    out += fmt::format("tokenizer: {{encoder: {}, merges: {}}}\n", encoder_file, merges_file);
  return out;
}

}  // namespace tessera::ir
