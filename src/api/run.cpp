#include "tessera/api/run.hpp"

#include <chrono>

#include "tessera/api/catalog.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/ref/executor.hpp"

namespace tessera::api {

namespace {

// Generation on any executor, streaming the prompt and each token's bytes to `on_text`.
template <typename Executor>
ref::GenerationResult generate(Executor& executor, const model::Tokenizer& tokenizer,
                               const std::vector<int32_t>& prompt, const RunRequest& request,
                               const std::function<void(std::string_view)>& on_text) {
  ref::GenerationOptions options;
  options.max_new_tokens = request.max_new_tokens;
  options.sampling = request.sampling;
  options.stop_token = tokenizer.end_of_text();
  options.keep_logits = request.keep_logits;
  ref::check_generation_fits(static_cast<int64_t>(prompt.size()), options.max_new_tokens, executor.max_context());
  if (on_text) on_text(request.prompt);
  return ref::generate(executor, prompt, options, [&](int32_t token) {
    if (on_text) on_text(tokenizer.token_bytes(token));
  });
}

// An encoder's prompt as BERT reads it: [CLS] text [SEP], the text's [MASK]s the tokens to fill.
std::vector<int32_t> encoder_prompt(const ir::ModelConfig& config, const model::Tokenizer& tokenizer,
                                    const std::string& text) {
  const auto cls = tokenizer.special("[CLS]"), sep = tokenizer.special("[SEP]");
  if (!tokenizer.is_wordpiece() || !cls || !sep || !tokenizer.special("[MASK]"))
    fail(
        "model '{}' is an encoder: it reads WordPiece text with [CLS], [SEP] and [MASK] tokens (BERT's vocab.txt), "
        "not this tokenizer",
        config.name);
  std::vector<int32_t> prompt = {*cls};
  for (int32_t id : tokenizer.encode(text)) prompt.push_back(id);
  prompt.push_back(*sep);
  return prompt;
}

// An encoder's run on any executor: the prompt's masks filled, each answer's text attached.
template <typename Executor>
ref::GenerationResult fill_masks(Executor& executor, const model::Tokenizer& tokenizer,
                                 const std::vector<int32_t>& prompt, const RunRequest& request,
                                 const std::function<void(std::string_view)>& on_text) {
  if (on_text) on_text(request.prompt);
  ref::GenerationResult result =
      ref::fill_masks(executor, prompt, *tokenizer.special("[MASK]"), 5, request.keep_logits);
  for (auto& m : result.masks)
    for (int32_t id : m.ids) m.tokens.push_back(tokenizer.token_bytes(id));
  return result;
}

// Refuses what the target cannot do, naming what would.
void check_capabilities(const target::Target& target, const RunRequest& request) {
  const target::Capabilities caps = target.capabilities();
  if (request.batch != 1 && !caps.batches_requests)
    fail(
        "--batch: {} computes one request per pass; batching and multi-chip systems: `tessera compare --batch B "
        "--arch Nx{}`",
        request.arch, request.arch);
  if (request.tensor_parallel != 1 && !caps.tensor_parallel)
    fail(
        "--tp is for GPU-like chips; {} chips split a model that does not fit one chip into a pipeline: `tessera "
        "compare --arch Nx{}`",
        request.arch, request.arch);
  if (request.expert_parallel != 1 && !caps.expert_parallel)
    fail("--ep is for GPU-like chips; {} chips split a model that does not fit one chip into a pipeline", request.arch);
}

// Timing-only runs: the given prompt length, or the length of the tokenized prompt.
int64_t timing_prompt_tokens(const ir::ModelConfig& config, const RunRequest& request) {
  if (request.prompt_tokens != 0) return request.prompt_tokens;
  if (!config.has_tokenizer() && request.tokenizer_dir.empty())
    fail("model '{}' ships no tokenizer; give the prompt length with --prompt-tokens N", config.name);
  const model::Tokenizer tokenizer = load_tokenizer(config, request.tokenizer_dir);
  return static_cast<int64_t>(config.is_encoder() ? encoder_prompt(config, tokenizer, request.prompt).size()
                                                  : encode_prompt(tokenizer, request.prompt).size());
}

}  // namespace

RunResult run(const RunRequest& request, const std::function<void(std::string_view)>& on_text) {
  const target::ModelSource model = load_model_source(resolve_model(request.model));
  const ir::ModelConfig& config = model.config;
  if (config.is_encoder() && config.head == ir::ModelConfig::EncoderHead::QuestionAnswering && request.values)
    fail(
        "model '{}' ends in a question-answering head (a start and an end logit per token), whose answers tessera "
        "does not decode; time it with --no-numerics (a masked-LM head's run fills [MASK]s)",
        config.name);
  RunResult result;
  if (request.arch == "host") {
    if (request.batch != 1 || request.tensor_parallel != 1 || request.expert_parallel != 1)
      fail("--batch, --tp and --ep describe a simulated machine; choose one with --arch (see `tessera archs`)");
    if (!request.values) fail("--no-numerics needs a simulated machine (--arch wse2, ...)");
    const ir::Graph graph = ir::build_model_graph(config);
    const model::Tokenizer tokenizer = load_tokenizer(config, request.tokenizer_dir);
    const model::Weights weights =
        load_weights(config, graph, request.weights, request.sampling.seed, request.precision);
    ref::ReferenceExecutor executor(graph, weights, config.context_length, request.precision);
    result.generation =
        config.is_encoder()
            ? fill_masks(executor, tokenizer, encoder_prompt(config, tokenizer, request.prompt), request, on_text)
            : generate(executor, tokenizer, encode_prompt(tokenizer, request.prompt), request, on_text);
    return result;
  }
  const auto target = load_target(request.arch, request.precision);
  check_capabilities(*target, request);
  require_experts_for_routing(config, request.routing);
  target::ChipWork work{.max_new_tokens = config.tokens_to_generate(request.max_new_tokens),
                        .micro_batch = request.batch,
                        .tensor_parallel = request.tensor_parallel,
                        .expert_parallel = request.expert_parallel,
                        .precision = request.precision,
                        .routing = request.routing};
  if (!request.values) {
    work.prompt_tokens = timing_prompt_tokens(config, request);
    result.report = target->simulate(*compile_or_fail(*target, model, work), request.simulate);
    return result;
  }
  if (request.prompt_tokens != 0) fail("--prompt-tokens is for --no-numerics runs; with values the prompt decides");
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, request.tokenizer_dir);
  const std::vector<int32_t> prompt = config.is_encoder() ? encoder_prompt(config, tokenizer, request.prompt)
                                                          : encode_prompt(tokenizer, request.prompt);
  work.prompt_tokens = static_cast<int64_t>(prompt.size());
  const auto plan = compile_or_fail(*target, model, work);
  const model::Weights weights = load_weights(config, graph, request.weights, request.sampling.seed, request.precision);
  const auto executor = target->executor(*plan, graph, weights, config.context_length);
  const auto start = std::chrono::steady_clock::now();
  result.generation = config.is_encoder() ? fill_masks(*executor, tokenizer, prompt, request, on_text)
                                          : generate(*executor, tokenizer, prompt, request, on_text);
  result.values_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.host_note = executor->host_note();
  target::SimulateOptions simulate = request.simulate;
  simulate.activation_density = executor->activation_density();
  result.report = target->simulate(*plan, simulate);
  result.report->prompt_ids = result.generation.prompt;
  result.report->generated_ids = result.generation.tokens;
  result.report->mask_predictions = result.generation.masks;
  return result;
}

EvalResult eval(const EvalRequest& request, const std::function<void(int64_t done, int64_t total)>& on_window) {
  const std::filesystem::path model_path = resolve_model(request.model);
  const target::ModelSource model = load_model_source(model_path);
  const ir::ModelConfig& config = model.config;
  if (config.is_encoder())
    fail("perplexity is a decoder's measure (each token predicted from the ones before it); '{}' is an encoder",
         config.name);
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, request.tokenizer_dir);
  const std::vector<int32_t> tokens = tokenizer.encode(read_text_file(request.text_path, kTextFile));
  const int64_t window = request.window == 0 ? config.context_length : request.window;
  if (window > config.context_length)
    fail("--window {} exceeds {}'s context of {} tokens", window, config.name, config.context_length);
  const model::Weights weights = load_weights(config, graph, request.weights, request.seed, request.precision);
  EvalResult result{{}, config.name, window};
  if (request.arch == "host") {
    ref::ReferenceExecutor executor(graph, weights, config.context_length, request.precision);
    result.perplexity = ref::evaluate_perplexity(executor, tokens, window, on_window);
    return result;
  }
  const auto target = load_target(request.arch, request.precision);
  const auto plan =
      compile_or_fail(*target, model, {.prompt_tokens = window, .max_new_tokens = 0, .precision = request.precision});
  const auto executor = target->executor(*plan, graph, weights, config.context_length);
  result.perplexity = ref::evaluate_perplexity(*executor, tokens, window, on_window);
  return result;
}

}  // namespace tessera::api
