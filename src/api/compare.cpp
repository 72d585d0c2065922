#include "tessera/api/compare.hpp"

#include <fmt/core.h>

#include <optional>
#include <random>

#include "tessera/api/catalog.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ref/executor.hpp"
#include "tessera/ref/generate.hpp"
#include "tessera/system/system.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/registry.hpp"

namespace tessera::api {

namespace {

// Greedy tokens from a seeded prompt of token ids, on the host reference and on a machine's
// executor, under the same precision policy.
class NumericsCheck {
 public:
  NumericsCheck(target::ModelSource model, const CompareRequest& request)
      : model_(std::move(model)), request_(request), graph_(ir::build_model_graph(model_.config)) {
    const ir::ModelConfig& config = model_.config;
    weights_ = load_weights(config, graph_, request.weights, request.seed, request.precision);
    std::mt19937_64 rng(request.seed);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(config.vocab_size - 1));
    for (int64_t i = 0; i < request.prompt_tokens; ++i) prompt_.push_back(id(rng));
    ref::ReferenceExecutor host(graph_, weights_, config.context_length, request.precision);
    reference_ = greedy(host);
  }

  // "= reference", or where the tokens first differ; "-" where the chip cannot run the request.
  // Systems of several chips are not checked.
  std::string check(const std::string& arch_name, int64_t chips) {
    if (chips != 1) return "not checked (systems)";
    const auto target = target::load_target(resolve_arch(arch_name));
    if (!target->supports(request_.precision)) return "-";
    const auto compiled = target->compile(model_, {.prompt_tokens = request_.prompt_tokens,
                                                   .max_new_tokens = request_.max_new_tokens,
                                                   .precision = request_.precision});
    if (!compiled.status) return "-";
    const auto executor = target->executor(*compiled.plan, graph_, weights_, model_.config.context_length);
    const std::vector<int32_t> tokens = greedy(*executor);
    for (size_t i = 0; i < reference_.size(); ++i)
      if (i >= tokens.size() || tokens[i] != reference_[i]) return fmt::format("differ at token {}", i);
    return "= reference";
  }

 private:
  template <typename Executor>
  std::vector<int32_t> greedy(Executor& executor) {
    ref::GenerationOptions options;
    options.max_new_tokens = request_.max_new_tokens;
    return ref::generate(executor, prompt_, options).tokens;
  }

  target::ModelSource model_;
  const CompareRequest& request_;
  ir::Graph graph_;
  model::Weights weights_;
  std::vector<int32_t> prompt_, reference_;
};

}  // namespace

std::vector<report::CompareRow> compare(const CompareRequest& request) {
  const target::ModelSource model = load_model_source(resolve_model(request.model));
  system::Workload work;
  work.model = model.config, work.model_yaml = model.yaml, work.model_origin = model.origin;
  work.prompt_tokens = request.prompt_tokens,
  work.max_new_tokens = model.config.tokens_to_generate(request.max_new_tokens);
  if (request.numerics && model.config.is_encoder())
    fail(
        "--numerics checks greedy generation; '{}' is an encoder, which fills masks: check its values with `tessera "
        "run -m {} --arch A -p \"... [MASK] ...\"`",
        model.config.name, request.model);
  work.tensor_parallel = request.tensor_parallel;
  work.expert_parallel = request.expert_parallel;
  work.precision = request.precision;
  work.routing = request.routing;
  require_experts_for_routing(model.config, request.routing);
  std::optional<NumericsCheck> numerics;
  if (request.numerics) numerics.emplace(model, request);
  std::vector<int64_t> batches = request.batches;
  if (request.sweep) {
    batches.clear();
    for (int64_t b = 1; b <= 1024; b *= 2) batches.push_back(b);
  }
  std::vector<report::CompareRow> rows;
  for (const std::string& text : request.machines) {
    const auto [chips, name] = system::parse_machine_name(text);
    const std::filesystem::path arch_path = resolve_arch(name);
    const std::string arch_yaml = read_text_file(arch_path);
    const system::Machine machine{target::parse_arch(arch_yaml, arch_path.string()), arch_yaml, arch_path.string(),
                                  chips};
    const std::string values = numerics ? numerics->check(name, chips) : "";
    for (const int64_t batch : batches) {
      work.batch = batch;
      report::CompareRow row = report::compare_row(text, request.model, batch, system::evaluate(machine, work));
      if (!row.fits) row.chips = chips;
      row.one_pass = work.max_new_tokens == 0;
      row.tokens = values;
      rows.push_back(row);
      if (request.sweep && !row.fits) break;
    }
  }
  return rows;
}

}  // namespace tessera::api
