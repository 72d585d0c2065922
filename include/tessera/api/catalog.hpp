// The api library's loaders: shipped presets and models, a model and a target loaded once, the
// weights and tokenizer a run uses. The CLI (and a Python module) call these; they never print.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tessera/model/tokenizer.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/target/target.hpp"

namespace tessera::api {

// Where the shipped presets and models live: $TESSERA_HOME, else the source tree tessera was built from.
std::filesystem::path data_dir();
// The shipped arch presets (configs/arch/*.yaml), sorted.
std::vector<std::filesystem::path> preset_files();
// A preset name or an arch file; throws Error listing the presets.
std::filesystem::path resolve_arch(const std::string& name_or_path);
// A shipped model's name, a config file or a model directory; throws Error listing the models.
std::filesystem::path resolve_model(const std::string& name_or_path);

// Fails with what `arch` lacks and which shipped presets support the whole policy.
void require_precision(const arch::ArchSpec& arch, const PrecisionPolicy& policy);
// Fails when a routing other than the default is asked of a model without experts.
void require_experts_for_routing(const ir::ModelConfig& model, compiler::Routing routing);

// The model config as plans embed it.
target::ModelSource load_model_source(const std::filesystem::path& model_path);
// The target of a preset or arch file, the policy checked against it (require_precision).
std::unique_ptr<target::Target> load_target(const std::string& arch_name, const PrecisionPolicy& policy);
// The compiled plan, or an Error saying what does not fit and what would (FitFailure rendered).
std::shared_ptr<const target::Plan> compile_or_fail(const target::Target& target, const target::ModelSource& model,
                                                    const target::ChipWork& work);

// The files a tokenizer is read from: `tokenizer_dir`'s (its GPT-2 encoder.json + vocab.bpe, else
// its tokenizer.json, else its WordPiece vocab.txt; encoder.json where it holds none, so that
// loading names what is missing), or the model package's own (the config must name one).
struct TokenizerFiles {
  enum class Kind { Bpe, Json, WordPiece };
  Kind kind = Kind::Bpe;
  std::filesystem::path file, merges;  // merges: Bpe only
};
TokenizerFiles tokenizer_files(const ir::ModelConfig& config, const std::string& tokenizer_dir);
// The tokenizer of tokenizer_files(); its vocabulary must be the model's.
model::Tokenizer load_tokenizer(const ir::ModelConfig& config, const std::string& tokenizer_dir);
// The prompt's tokens; an empty prompt starts from <|endoftext|>.
std::vector<int32_t> encode_prompt(const model::Tokenizer& tokenizer, const std::string& text);
// The weights a run uses, with the precision policy applied (the same values for every executor):
// `source` is a safetensors file, "random" (seeded by `seed`), or "" for the model's shipped weights.
model::Weights load_weights(const ir::ModelConfig& config, const ir::Graph& graph, const std::string& source,
                            uint64_t seed, const PrecisionPolicy& policy);

}  // namespace tessera::api
