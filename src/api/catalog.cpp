#include "tessera/api/catalog.hpp"

#include <algorithm>
#include <cstdlib>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/model/model_package.hpp"
#include "tessera/model/quantize.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/registry.hpp"

namespace tessera::api {

namespace fs = std::filesystem;

fs::path data_dir() {
  if (const char* home = std::getenv("TESSERA_HOME"); home && *home) return home;
  return TESSERA_DATA_DIR;
}

std::vector<fs::path> preset_files() {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& file : fs::directory_iterator(data_dir() / "configs" / "arch", ec))
    if (file.path().extension() == ".yaml") files.push_back(file.path());
  std::sort(files.begin(), files.end());
  return files;
}

fs::path resolve_arch(const std::string& name_or_path) {
  std::error_code ec;
  // A path the user gave is the arch file: reading it says what is wrong with it.
  const fs::file_type type = fs::symlink_status(name_or_path, ec).type();
  if (type != fs::file_type::not_found && type != fs::file_type::none && type != fs::file_type::directory)
    return name_or_path;
  const fs::path preset = data_dir() / "configs" / "arch" / (name_or_path + ".yaml");
  if (fs::is_regular_file(preset, ec)) return preset;
  std::string names;
  for (const auto& f : preset_files()) names += (names.empty() ? "" : ", ") + f.stem().string();
  fail("unknown arch '{}': not a file and not a preset (host, {}); see `tessera archs`", name_or_path, names);
}

fs::path resolve_model(const std::string& name_or_path) {
  return model::resolve_model_config(name_or_path, data_dir());
}

void require_precision(const arch::ArchSpec& arch, const PrecisionPolicy& policy) {
  const Status s = arch::check_precision(arch, policy);
  if (s) return;
  std::string able;
  for (const auto& file : preset_files()) {
    const arch::ArchSpec preset = target::load_arch(file);
    if (arch::check_precision(preset, policy)) able += (able.empty() ? "" : ", ") + preset.name;
  }
  fail("{}; {}", s.message(),
       able.empty() ? "no shipped preset supports " + policy.describe() + " (the host reference runs any policy)"
                    : "presets that support " + policy.describe() + ": " + able);
}

void require_experts_for_routing(const ir::ModelConfig& model, compiler::Routing routing) {
  if (routing != compiler::Routing::Uniform && model.n_experts == 0)
    fail("--routing is for mixtures of experts; {} has none", model.name);
}

target::ModelSource load_model_source(const fs::path& model_path) {
  std::string text = read_text_file(model_path), origin = model_path.string();
  // Plans embed the model's description as text: an ONNX export's is the YAML it is raised to.
  if (origin.ends_with(".onnx"))
    text = ir::onnx_config_yaml(text, origin, model_path.parent_path()), origin = ir::onnx_yaml_origin(origin);
  return {ir::parse_model_config(text, origin, model_path.parent_path()), text, origin};
}

std::unique_ptr<target::Target> load_target(const std::string& arch_name, const PrecisionPolicy& policy) {
  auto target = target::load_target(resolve_arch(arch_name));
  require_precision(target->arch(), policy);
  return target;
}

std::shared_ptr<const target::Plan> compile_or_fail(const target::Target& target, const target::ModelSource& model,
                                                    const target::ChipWork& work) {
  auto compiled = target.compile(model, work);
  if (!compiled.status) fail("{}", compiled.status.message());
  return compiled.plan;
}

TokenizerFiles tokenizer_files(const ir::ModelConfig& config, const std::string& tokenizer_dir) {
  using Kind = TokenizerFiles::Kind;
  if (tokenizer_dir.empty()) {
    if (config.tokenizer_json_path) return {Kind::Json, *config.tokenizer_json_path, {}};
    if (config.wordpiece_path) return {Kind::WordPiece, *config.wordpiece_path, {}};
    TESSERA_ASSERT(config.encoder_path && config.merges_path);
    return {Kind::Bpe, *config.encoder_path, *config.merges_path};
  }
  const fs::path dir(tokenizer_dir);
  std::error_code ec;
  if (!fs::exists(dir / "encoder.json", ec)) {
    if (fs::exists(dir / "tokenizer.json", ec)) return {Kind::Json, dir / "tokenizer.json", {}};
    if (fs::exists(dir / "vocab.txt", ec)) return {Kind::WordPiece, dir / "vocab.txt", {}};
  }
  return {Kind::Bpe, dir / "encoder.json", dir / "vocab.bpe"};
}

model::Tokenizer load_tokenizer(const ir::ModelConfig& config, const std::string& tokenizer_dir) {
  if (tokenizer_dir.empty() && !config.has_tokenizer())
    fail(
        "model '{}' ships no tokenizer; pass --tokenizer DIR with GPT-2 style encoder.json and vocab.bpe (or a "
        "tokenizer.json, or BERT's vocab.txt)",
        config.name);
  const TokenizerFiles files = tokenizer_files(config, tokenizer_dir);
  model::Tokenizer tokenizer = files.kind == TokenizerFiles::Kind::Json ? model::Tokenizer::load_hf(files.file)
                               : files.kind == TokenizerFiles::Kind::WordPiece
                                   ? model::Tokenizer::load_wordpiece(files.file, config.lowercase)
                                   : model::Tokenizer::load(files.file, files.merges);
  if (tokenizer.vocab_size() != config.vocab_size)
    fail("the tokenizer has {} tokens but model '{}' has vocab_size {}; use the tokenizer the model was trained with",
         tokenizer.vocab_size(), config.name, config.vocab_size);
  return tokenizer;
}

namespace {

model::Weights load_unquantized_weights(const ir::ModelConfig& config, const ir::Graph& graph,
                                        const std::string& source, uint64_t seed) {
  if (source == "random") return model::random_weights(graph, seed);
  if (!source.empty()) return model::load_weights(graph, source);
  if (config.weights_path) return model::load_weights(graph, *config.weights_path);
  fail("model '{}' ships no weights; pass --weights FILE.safetensors, or --weights random for seeded random weights",
       config.name);
}

}  // namespace

model::Weights load_weights(const ir::ModelConfig& config, const ir::Graph& graph, const std::string& source,
                            uint64_t seed, const PrecisionPolicy& policy) {
  model::Weights weights = load_unquantized_weights(config, graph, source, seed);
  if (!policy.prune.empty()) weights = model::prune_weights(graph, weights, policy.prune);
  if (policy.weights == "fp32" && policy.scales == "auto") return weights;
  return model::quantize_weights(graph, weights, policy.weights, policy.group, policy.scales);
}

std::vector<int32_t> encode_prompt(const model::Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> prompt = tokenizer.encode(text);
  if (prompt.empty()) {
    if (!tokenizer.end_of_text()) fail("the prompt is empty and the tokenizer has no <|endoftext|> to start from");
    prompt.push_back(*tokenizer.end_of_text());
  }
  return prompt;
}

}  // namespace tessera::api
