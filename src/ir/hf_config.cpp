// A Hugging Face model directory's config.json, read as tessera's model config: the fields of the
// families tessera models are mapped to its keys (model_config.hpp), the ones that change no
// computation tessera does are passed over, and any other field, or a supported field with a value
// tessera does not model, is an error naming it.
#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "tessera/base/error.hpp"
#include "tessera/ir/model_config.hpp"

namespace tessera::ir {

namespace {

using nlohmann::json;

// Fields of a config.json that change nothing tessera computes: metadata, dropout (inference and
// tessera's training run without it), token ids the tokenizer files also carry, and heads for tasks
// other than language modelling.
const std::set<std::string> kPassedOver = {"architectures",
                                           "model_type",
                                           "torch_dtype",
                                           "transformers_version",
                                           "_name_or_path",
                                           "bos_token_id",
                                           "eos_token_id",
                                           "pad_token_id",
                                           "use_cache",
                                           "initializer_range",
                                           "attn_pdrop",
                                           "embd_pdrop",
                                           "resid_pdrop",
                                           "attention_dropout",
                                           "hidden_dropout",
                                           "summary_type",
                                           "summary_use_proj",
                                           "summary_activation",
                                           "summary_proj_to_labels",
                                           "summary_first_dropout",
                                           "task_specific_params",
                                           "id2label",
                                           "label2id",
                                           "output_past",
                                           "tokenizer_class",
                                           "hidden_dropout_prob",
                                           "attention_probs_dropout_prob",
                                           "classifier_dropout",
                                           "gradient_checkpointing"};

class Fields {
 public:
  Fields(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  std::string where(const std::string& key) const { return fmt::format("{}: field '{}'", origin_, key); }

  int64_t integer(const std::string& key) const {
    if (!has(key)) fail("{} is missing (a {} config needs it)", where(key), family_);
    const json& v = j_.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0)
      fail("{}: expected a positive integer, got {}", where(key), v.dump());
    return v.get<int64_t>();
  }
  double number(const std::string& key, std::optional<double> fallback = {}) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      fail("{} is missing (a {} config needs it)", where(key), family_);
    }
    const json& v = j_.at(key);
    if (!v.is_number() || !(v.get<double>() > 0)) fail("{}: expected a positive number, got {}", where(key), v.dump());
    return v.get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_.at(key).is_boolean()) fail("{}: expected true or false, got {}", where(key), j_.at(key).dump());
    return j_.at(key).get<bool>();
  }
  // A field tessera models only at one value.
  void require(const std::string& key, const json& value, const std::string& why) const {
    if (has(key) && j_.at(key) != value) fail("{} is {}: {}", where(key), j_.at(key).dump(), why);
  }
  void set_family(std::string family) { family_ = std::move(family); }

 private:
  const json& j_;
  std::string origin_, family_;
};

}  // namespace

std::string hf_config_yaml(const std::string& json_text, const std::string& origin, const std::string& name,
                           const std::string& weights_file, const std::string& encoder_file,
                           const std::string& merges_file, const std::string& tokenizer_json) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON ({})", origin, e.what());
  }
  if (!j.is_object()) fail("{}: a Hugging Face config.json is a JSON object", origin);
  Fields f(j, origin);
  const std::string type =
      j.contains("model_type") && j.at("model_type").is_string() ? j.at("model_type").get<std::string>() : "(none)";
  std::set<std::string> known = kPassedOver;
  std::string out = fmt::format("name: {}\n", json(name).dump());
  if (type == "gpt2") {
    f.set_family("GPT-2");
    known.insert({"vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "n_ctx", "layer_norm_epsilon",
                  "tie_word_embeddings", "activation_function", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
                  "add_cross_attention", "reorder_and_upcast_attn"});
    f.require("activation_function", "gelu_new", "tessera's GPT-2 uses the tanh GELU (gelu_new)");
    f.require("scale_attn_by_inverse_layer_idx", false, "per-layer attention scaling is not modelled");
    f.require("add_cross_attention", false, "cross-attention (an encoder-decoder) is not modelled");
    f.require("scale_attn_weights", true, "attention without 1/sqrt(head_dim) is not modelled");
    const int64_t d = f.integer("n_embd");
    if (f.has("n_ctx") && f.integer("n_ctx") != f.integer("n_positions"))
      fail("{}: {} differs from n_positions {}", f.where("n_ctx"), f.integer("n_ctx"), f.integer("n_positions"));
    out += fmt::format(
        "family: gpt2\nvocab_size: {}\ncontext_length: {}\nd_model: {}\nn_layers: {}\nn_heads: {}\nd_ff: {}\n"
        "norm_eps: {}\ntie_embeddings: {}\n",
        f.integer("vocab_size"), f.integer("n_positions"), d, f.integer("n_layer"), f.integer("n_head"),
        f.has("n_inner") ? f.integer("n_inner") : 4 * d, f.number("layer_norm_epsilon", 1e-5),
        f.boolean("tie_word_embeddings", true) ? "true" : "false");
  } else if (type == "llama" || type == "mistral" || type == "mixtral") {
    f.set_family(type == "llama" ? "Llama" : type == "mistral" ? "Mistral" : "Mixtral");
    known.insert({"vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "num_key_value_heads", "rms_norm_eps", "tie_word_embeddings", "rope_theta",
                  "rope_scaling", "hidden_act", "attention_bias", "mlp_bias", "head_dim", "sliding_window",
                  "pretraining_tp"});
    f.require("pretraining_tp", 1, "Llama 2's tensor-parallel pretraining split of the MLP is not modelled");
    f.require("hidden_act", "silu", "tessera's Llama MLP is SwiGLU (silu)");
    f.require("attention_bias", false, "biases on the attention projections are not modelled");
    f.require("mlp_bias", false, "biases on the MLP projections are not modelled");
    const int64_t d = f.integer("hidden_size"), heads = f.integer("num_attention_heads");
    if (f.has("head_dim") && f.integer("head_dim") * heads != d)
      fail("{}: {} x {} heads is not hidden_size {}; a head size apart from hidden_size / heads is not modelled",
           f.where("head_dim"), f.integer("head_dim"), heads, d);
    const int64_t context = f.integer("max_position_embeddings");
    if (f.has("sliding_window") && f.integer("sliding_window") < context)
      fail("{}: a {}-token window under a {}-token context; sliding-window attention is not modelled",
           f.where("sliding_window"), f.integer("sliding_window"), context);
    out += fmt::format(
        "family: llama\nvocab_size: {}\ncontext_length: {}\nd_model: {}\nn_layers: {}\nn_heads: {}\nn_kv_heads: {}\n"
        "d_ff: {}\nnorm_eps: {}\ntie_embeddings: {}\nrope_theta: {}\n",
        f.integer("vocab_size"), context, d, f.integer("num_hidden_layers"), heads,
        f.has("num_key_value_heads") ? f.integer("num_key_value_heads") : heads, f.integer("intermediate_size"),
        f.number("rms_norm_eps", 1e-6), f.boolean("tie_word_embeddings", false) ? "true" : "false",
        f.number("rope_theta", 10000.0));
    if (type == "mixtral") {
      // The router's training-only terms change no forward pass; jitter noise is training-only too.
      known.insert({"num_local_experts", "num_experts_per_tok", "router_aux_loss_coef", "output_router_logits",
                    "router_jitter_noise"});
      out += fmt::format("n_experts: {}\nexperts_per_token: {}\n", f.integer("num_local_experts"),
                         f.integer("num_experts_per_tok"));
    }
    if (f.has("rope_scaling")) {
      const json& s = j.at("rope_scaling");
      const std::string kind = s.is_object() && s.contains("rope_type") ? s.at("rope_type").dump()
                               : s.is_object() && s.contains("type")    ? s.at("type").dump()
                                                                        : "(none)";
      if (kind != "\"llama3\"")
        fail("{}: rope type {}; tessera models Llama 3.1's scaling (rope_type \"llama3\") only",
             f.where("rope_scaling"), kind);
      const Fields r(s, origin + " rope_scaling");
      out += fmt::format(
          "rope_scaling: {{factor: {}, low_freq_factor: {}, high_freq_factor: {}, original_context_length: {}}}\n",
          r.number("factor"), r.number("low_freq_factor"), r.number("high_freq_factor"),
          r.integer("original_max_position_embeddings"));
    }
  } else if (type == "bert") {
    f.set_family("BERT");
    known.insert({"vocab_size", "max_position_embeddings", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "hidden_act", "layer_norm_eps", "type_vocab_size", "position_embedding_type",
                  "is_decoder", "add_cross_attention", "tie_word_embeddings"});
    f.require("hidden_act", "gelu", "tessera's BERT uses the erf GELU (gelu)");
    f.require("position_embedding_type", "absolute", "relative position embeddings are not modelled");
    f.require("is_decoder", false, "BERT as a causal decoder is not modelled");
    f.require("add_cross_attention", false, "cross-attention (an encoder-decoder) is not modelled");
    f.require("tie_word_embeddings", true, "the masked-LM decoder is the word embeddings, as BertForMaskedLM ties it");
    // The architecture names the head: question answering, or (any other) the masked-LM head.
    const bool qa = j.contains("architectures") && j.at("architectures") == json::array({"BertForQuestionAnswering"});
    out += fmt::format(
        "family: bert\nvocab_size: {}\ncontext_length: {}\nd_model: {}\nn_layers: {}\nn_heads: {}\nd_ff: {}\n"
        "norm_eps: {}\ntie_embeddings: true\ntype_vocab_size: {}\nhead: {}\n",
        f.integer("vocab_size"), f.integer("max_position_embeddings"), f.integer("hidden_size"),
        f.integer("num_hidden_layers"), f.integer("num_attention_heads"), f.integer("intermediate_size"),
        f.number("layer_norm_eps", 1e-12), f.has("type_vocab_size") ? f.integer("type_vocab_size") : 2,
        qa ? "question_answering" : "masked_lm");
  } else {
    fail("{}: model_type {} is not a family tessera models (gpt2, llama, mistral, mixtral, bert)",
         f.where("model_type"), type == "(none)" ? type : json(type).dump());
  }
  for (const auto& [key, value] : j.items())
    if (!known.contains(key))
      fail(
          "{} is not one tessera reads for model_type {}; it may change the model in a way tessera does not "
          "simulate (remove it if it does not)",
          f.where(key), type);
  if (!weights_file.empty()) out += fmt::format("weights: {}\n", json(weights_file).dump());
  if (!encoder_file.empty())
    out += fmt::format("tokenizer: {{encoder: {}, merges: {}}}\n", json(encoder_file).dump(), json(merges_file).dump());
  else if (!tokenizer_json.empty())
    out += fmt::format("tokenizer: {{json: {}}}\n", json(tokenizer_json).dump());
  return out;
}

}  // namespace tessera::ir
