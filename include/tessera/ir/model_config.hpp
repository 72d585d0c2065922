// The shape description of a transformer (configs/models/*.yaml): a decoder (GPT-2, Llama and
// Mixtral families) or an encoder (BERT).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace tessera::ir {

// Bert: post-LayerNorm blocks with bidirectional attention, learned positions and token types, an
// embedding LayerNorm, erf GELU and the masked-LM head (BertForMaskedLM). An encoder fills masks;
// it does not generate.
enum class ModelFamily { Gpt2, Llama, Bert };

// Llama 3.1 "llama3" RoPE frequency scaling (Meta's apply_scaling).
struct RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_context_length = 8192;
};

struct ModelConfig {
  std::string name;
  ModelFamily family = ModelFamily::Gpt2;
  int64_t vocab_size = 0;
  int64_t context_length = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // == n_heads for GPT-2 (multi-head attention)
  int64_t d_ff = 0;
  double norm_eps = 1e-5;
  bool tie_embeddings = true;
  double rope_theta = 10000.0;  // Llama only
  std::optional<RopeScaling> rope_scaling;
  // Llama only: a mixture of experts in place of each MLP (Mixtral): n_experts SwiGLU experts of
  // d_ff each, experts_per_token of them per token by a learned router. 0: a dense MLP.
  int64_t n_experts = 0, experts_per_token = 0;
  int64_t type_vocab_size = 0;  // BERT only: segment (token type) embeddings
  // BERT only: the masked-LM head (BertForMaskedLM: fills [MASK]s), or the question-answering head
  // (BertForQuestionAnswering: a start and an end logit per token, what SQuAD benchmarks run).
  enum class EncoderHead { MaskedLm, QuestionAnswering };
  EncoderHead head = EncoderHead::MaskedLm;
  std::string source;  // where the published shapes come from

  // A model package (models/NAME/config.yaml) also names its files, relative to the config.
  std::optional<std::filesystem::path> weights_path;
  std::optional<std::filesystem::path> encoder_path;
  std::optional<std::filesystem::path> merges_path;
  std::optional<std::filesystem::path> tokenizer_json_path;  // or a Hugging Face tokenizer.json
  std::optional<std::filesystem::path> wordpiece_path;       // or BERT's vocab.txt (WordPiece)
  bool lowercase = false;                                    // WordPiece: lower-case and strip accents first
  bool has_tokenizer() const {
    return encoder_path.has_value() || tokenizer_json_path.has_value() || wordpiece_path.has_value();
  }

  int64_t head_dim() const { return d_model / n_heads; }
  bool is_encoder() const { return family == ModelFamily::Bert; }
  // The tokens a request for `requested` new tokens generates: an encoder makes one pass over its
  // prompt and generates nothing.
  int64_t tokens_to_generate(int64_t requested) const { return is_encoder() ? 0 : requested; }
};

const char* family_name(ModelFamily family);

// Parses and validates a model config; throws Error naming file and key on bad input.
ModelConfig load_model_config(const std::filesystem::path& path);
// The config as YAML that parse_model_config reads back to an equal config; a package's files
// (weights, tokenizer) are written relative names given here, or left out when empty.
// `merges_file` empty with an `encoder_file`: that file is a tokenizer.json, or a WordPiece
// vocab.txt when its name ends in ".txt".
std::string model_config_yaml(const ModelConfig& config, const std::string& weights_file = {},
                              const std::string& encoder_file = {}, const std::string& merges_file = {});
// `origin` ending in ".json" is a Hugging Face config.json (hf_config_yaml), whose directory
// `base_dir` also holds its weights and tokenizer files.
ModelConfig parse_model_config(const std::string& yaml_text, const std::string& origin,
                               const std::filesystem::path& base_dir = {});

// A model exported with torch.onnx (onnx/onnx_import.hpp) as the model config YAML the parser
// above reads: named after the file, its weights the file itself, a tokenizer beside it in
// `base_dir` as in a Hugging Face directory. Throws Error naming the file, node and op for a graph
// tessera does not raise. An `origin` ending in ".onnx" is parsed through this.
std::string onnx_config_yaml(const std::string& bytes, const std::string& origin,
                             const std::filesystem::path& base_dir = {});
inline std::string onnx_yaml_origin(const std::string& onnx_origin) {
  return onnx_origin + " (as tessera's model keys)";
}

// A Hugging Face config.json (GPT-2, Llama 2/3/3.1, Mistral) as the model config YAML the parser
// above reads, named `name`, with the directory's weights (model.safetensors, or the index of a
// sharded checkpoint) and tokenizer files when given. Throws Error naming the file and field for
// a field tessera does not read, or a value it does not model (a sliding window, attention biases,
// another activation, another RoPE scaling).
std::string hf_config_yaml(const std::string& json_text, const std::string& origin, const std::string& name,
                           const std::string& weights_file = {}, const std::string& encoder_file = {},
                           const std::string& merges_file = {}, const std::string& tokenizer_json = {});

}  // namespace tessera::ir
