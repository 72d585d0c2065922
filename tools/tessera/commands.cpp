#include "commands.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "tessera/api/compare.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/model/model_package.hpp"
#include "tessera/ref/eval.hpp"
#include "tessera/report/compare.hpp"
#include "tessera/report/mesh_report.hpp"
#include "tessera/report/output_files.hpp"
#include "tessera/target/registry.hpp"

namespace tessera::cli {

// A run on a simulated machine: the plan's values from the target's executor (a data plane, or
// the reference in the plan's arithmetic order), then the plan timed by the target's model.
int run_on_target(const fs::path& model_path, const RunFlags& flags, const PrecisionPolicy& policy) {
  const auto target = load_target(flags.arch, policy);
  const target::Capabilities caps = target->capabilities();
  if (flags.batch != 1 && !caps.batches_requests)
    fail(
        "--batch: {} computes one request per pass; batching and multi-chip systems: `tessera compare --batch B "
        "--arch Nx{}`",
        flags.arch, flags.arch);
  if (flags.tensor_parallel != 1 && !caps.tensor_parallel)
    fail(
        "--tp is for GPU-like chips; {} chips split a model that does not fit one chip into a pipeline: `tessera "
        "compare --arch Nx{}`",
        flags.arch, flags.arch);
  if (!caps.core_heatmaps && !flags.outputs.heatmaps.empty())
    fail("--heatmaps draws the cores of a mesh machine; {} has none to draw (--json, --csv and --trace work)",
         flags.arch);
  const target::ModelSource model = load_model_source(model_path);
  const ir::ModelConfig& config = model.config;
  target::ChipWork work{.max_new_tokens = flags.max_tokens,
                        .micro_batch = flags.batch,
                        .tensor_parallel = flags.tensor_parallel,
                        .precision = policy};
  if (flags.no_numerics) {
    work.prompt_tokens = timing_prompt_tokens(config, flags);
    return simulate_and_report(*target, *compile_or_fail(*target, model, work), flags.outputs);
  }
  if (flags.prompt_tokens != 0) fail("--prompt-tokens is for --no-numerics runs; with values the prompt decides");
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, flags.tokenizer_dir);
  const std::vector<int32_t> prompt = encode_prompt(tokenizer, flags.prompt);
  work.prompt_tokens = static_cast<int64_t>(prompt.size());
  const auto plan = compile_or_fail(*target, model, work);
  const model::Weights weights = load_run_weights(config, graph, flags, policy);
  const auto executor = target->executor(*plan, graph, weights, config.context_length);
  const auto wall_start = std::chrono::steady_clock::now();
  const auto result = generate_text(*executor, tokenizer, prompt, flags);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  std::printf("\n\n");
  simulate_and_report(*target, *plan, flags.outputs, executor->activation_density());
  if (const std::string note = executor->host_note(); !note.empty())
    std::printf("  host: %s; simulated with values in %.2f s wall, %.3f s per decoded token\n", note.c_str(), wall,
                result.tokens.size() > 1 ? result.decode_seconds / static_cast<double>(result.tokens.size() - 1) : 0.0);
  return 0;
}

int eval_command(const RunFlags& flags, const std::string& text_path, int64_t window) {
  const fs::path model_path = resolve_model(flags.model);
  const ir::ModelConfig config = ir::load_model_config(model_path);
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, flags.tokenizer_dir);
  const std::vector<int32_t> tokens = tokenizer.encode(read_text_file(text_path, kTextFile));
  if (window == 0) window = config.context_length;
  if (window > config.context_length)
    fail("--window {} exceeds {}'s context of {} tokens", window, config.name, config.context_length);
  const PrecisionPolicy policy = flags.precision.resolve();
  const model::Weights weights = load_run_weights(config, graph, flags, policy);
  Progress progress("evaluating", flags.outputs.quiet);
  auto on_window = [&](int64_t done, int64_t total) { progress.update(done, total); };
  ref::Perplexity p;
  if (flags.arch == "host") {
    ref::ReferenceExecutor executor(graph, weights, config.context_length, policy);
    p = ref::evaluate_perplexity(executor, tokens, window, on_window);
  } else {
    const auto target = load_target(flags.arch, policy);
    const auto plan = compile_or_fail(*target, load_model_source(model_path),
                                      {.prompt_tokens = window, .max_new_tokens = 0, .precision = policy});
    const auto executor = target->executor(*plan, graph, weights, config.context_length);
    p = ref::evaluate_perplexity(*executor, tokens, window, on_window);
  }
  std::printf("%s on %s, %s: perplexity %.4f (%.4f nats/token) over %lld tokens of %s in %lld windows of %lld\n",
              config.name.c_str(), flags.arch.c_str(), policy.describe().c_str(), p.perplexity, p.mean_nll,
              static_cast<long long>(p.tokens_scored), text_path.c_str(), static_cast<long long>(p.windows),
              static_cast<long long>(window));
  return 0;
}

// The files a run reads, which none of its outputs may replace.
std::vector<fs::path> run_inputs(const RunFlags& flags, const fs::path& model_path) {
  std::vector<fs::path> inputs = {model_path};
  if (!flags.weights.empty() && flags.weights != "random") inputs.emplace_back(flags.weights);
  if (!flags.precision.file.empty()) inputs.emplace_back(flags.precision.file);
  if (!flags.tokenizer_dir.empty())
    for (const char* name : {"encoder.json", "vocab.bpe"}) inputs.push_back(fs::path(flags.tokenizer_dir) / name);
  if (flags.arch != "host") inputs.push_back(resolve_arch(flags.arch));
  return inputs;
}

int run_command(const RunFlags& given) {
  RunFlags flags = given;
  const fs::path model_path = resolve_model(flags.model);
  flags.outputs.inputs = run_inputs(flags, model_path);
  check_outputs(flags.outputs);
  if (flags.arch == "host" &&
      (!flags.outputs.json.empty() || !flags.outputs.trace.empty() || !flags.outputs.heatmaps.empty()))
    fail("--json, --trace and --heatmaps report a simulated machine; choose one with --arch (see `tessera archs`)");
  const PrecisionPolicy policy = flags.precision.resolve();
  if (flags.arch != "host") return run_on_target(model_path, flags, policy);
  if (flags.batch != 1 || flags.tensor_parallel != 1)
    fail("--batch and --tp describe a simulated machine; choose one with --arch (see `tessera archs`)");
  if (flags.no_numerics) fail("--no-numerics needs a simulated machine (--arch wse2, ...)");
  const ir::ModelConfig config = ir::load_model_config(model_path);
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, flags.tokenizer_dir);
  const model::Weights weights = load_run_weights(config, graph, flags, policy);
  const std::vector<int32_t> prompt = encode_prompt(tokenizer, flags.prompt);
  ref::ReferenceExecutor executor(graph, weights, config.context_length, policy);
  const auto result = generate_text(executor, tokenizer, prompt, flags);
  const double decode_steps = static_cast<double>(result.tokens.size() > 0 ? result.tokens.size() - 1 : 0);
  std::printf(
      "\n\n[%s on host reference executor, fp32] %lld prompt tokens, %zu generated; prefill %.1f ms; "
      "decode %.1f tokens/s\n",
      config.name.c_str(), static_cast<long long>(result.prompt_tokens), result.tokens.size(),
      result.prefill_seconds * 1e3, decode_steps > 0 ? decode_steps / result.decode_seconds : 0.0);
  return 0;
}

std::string with_thousands(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

int models_command() {
  const auto entries = model::list_models(data_dir());
  std::printf("%-14s %-6s %7s %7s %6s %5s %8s %16s  %s\n", "name", "family", "layers", "d_model", "heads", "kv",
              "context", "parameters", "weights");
  for (const auto& entry : entries) {
    const ir::ModelConfig c = ir::load_model_config(entry.config_path);
    const int64_t params = ir::build_model_graph(c).parameter_count();
    std::printf("%-14s %-6s %7lld %7lld %6lld %5lld %8lld %16s  %s\n", entry.name.c_str(), ir::family_name(c.family),
                static_cast<long long>(c.n_layers), static_cast<long long>(c.d_model),
                static_cast<long long>(c.n_heads), static_cast<long long>(c.n_kv_heads),
                static_cast<long long>(c.context_length), with_thousands(params).c_str(),
                entry.ships_weights ? "shipped" : "shapes only (--weights FILE|random)");
  }
  return 0;
}

int archs_command() {
  std::printf("%-11s %-13s %11s %9s %9s %7s %12s  %s\n", "name", "fabric", "grid", "cores", "SRAM/core", "clock",
              "fp16 TMAC/s", "description");
  std::printf("%-11s %-13s %11s %9s %9s %7s %12s  %s\n", "host", "-", "-", "-", "-", "-", "-",
              "built-in reference executor: fp32 on this CPU (OpenBLAS), the numerical oracle");
  for (const auto& file : preset_files()) {
    const arch::ArchSpec a = arch::load_arch(file);
    std::printf("%-11s %-13s %11s %9s %6.0fKiB %5.2fGHz %12.1f  %s\n", a.name.c_str(), arch::fabric_name(a.fabric),
                fmt::format("{}x{}", a.usable.width, a.usable.height).c_str(), with_thousands(a.usable.cores()).c_str(),
                a.core.sram_bytes / 1024, a.clock_hz / 1e9, a.peak_macs_per_second("fp16") / 1e12,
                a.description.c_str());
  }
  return 0;
}

// One model on several machines (a preset, or a system COUNTxPRESET), timing-only: a row per
// machine and batch size.
int compare_command(const CompareFlags& flags) {
  const fs::path model_path = resolve_model(flags.model);
  std::vector<fs::path> inputs = {model_path};
  if (!flags.precision.file.empty()) inputs.emplace_back(flags.precision.file);
  if (!flags.weights.empty() && flags.weights != "random") inputs.emplace_back(flags.weights);
  check_outputs({flags.json, flags.csv}, inputs);
  PrecisionFlags precision = flags.precision;
  if (precision.dtype.empty() && precision.file.empty()) precision.dtype = "fp16";
  const api::CompareRequest request{
      flags.model,           flags.archs,         flags.prompt_tokens, flags.max_tokens, flags.batches, flags.sweep,
      flags.tensor_parallel, precision.resolve(), flags.numerics,      flags.weights,    flags.seed};
  const std::vector<report::CompareRow> rows = api::compare(request);
  std::printf("%s, %lld prompt + %lld generated tokens per request, %s (%s)\n", flags.model.c_str(),
              static_cast<long long>(flags.prompt_tokens), static_cast<long long>(flags.max_tokens),
              request.precision.describe().c_str(),
              flags.numerics ? "greedy tokens checked against the host reference" : "timing-only");
  std::fputs(report::compare_table(rows).c_str(), stdout);
  if (flags.sweep) std::fputs(report::batch_sweep_summary(rows).c_str(), stdout);
  if (!flags.json.empty()) report::write_output(flags.json, report::compare_json(rows), inputs);
  if (!flags.csv.empty()) report::write_output(flags.csv, report::compare_csv(rows), inputs);
  return 0;
}

// `tessera simulate PLAN`: any plan `compile --arch` writes, told apart by its format field.
int simulate_command(const std::string& plan_path, const Outputs& given) {
  Outputs outputs = given;
  outputs.inputs = {plan_path};
  check_outputs(outputs);
  const target::LoadedPlan loaded = target::load_plan(read_text_file(plan_path, kPlanFile), plan_path);
  return simulate_and_report(*loaded.target, *loaded.plan, outputs);
}

int compile_command(const CompileFlags& flags) {
  const fs::path model_path = resolve_model(flags.model);
  if (!flags.arch.empty()) {
    if (flags.output.empty()) fail("compiling for --arch {} needs -o PLAN.json", flags.arch);
    std::vector<fs::path> inputs = {model_path, resolve_arch(flags.arch)};
    if (!flags.precision.file.empty()) inputs.emplace_back(flags.precision.file);
    check_outputs({flags.output}, inputs);
    const auto write_plan = [&](const std::string& json) { report::write_output(flags.output, json, inputs); };
    const PrecisionPolicy policy = flags.precision.resolve();
    const auto target = load_target(flags.arch, policy);
    const auto plan = compile_or_fail(*target, load_model_source(model_path),
                                      {.prompt_tokens = flags.prompt_tokens,
                                       .max_new_tokens = flags.max_tokens,
                                       .micro_batch = flags.batch,
                                       .tensor_parallel = flags.tensor_parallel,
                                       .precision = policy});
    write_plan(plan->to_json());
    std::fputs(plan->describe().c_str(), stdout);
    std::printf("wrote %s; run it with `tessera simulate %s`\n", flags.output.c_str(), flags.output.c_str());
    return 0;
  }
  const ir::ModelConfig config = ir::load_model_config(model_path);
  const ir::Graph graph = ir::build_model_graph(config);
  if (const Status s = graph.verify(); !s) fail("model '{}' built an invalid graph: {}", config.name, s.message());
  if (flags.emit == "ir") {
    std::printf("# %s: %s family, %lld parameters, %zu nodes\n", config.name.c_str(), ir::family_name(config.family),
                static_cast<long long>(graph.parameter_count()), graph.nodes().size());
    std::fputs(graph.dump().c_str(), stdout);
  } else {
    fail("--emit {} is not supported; choose: ir", flags.emit);
  }
  return 0;
}

int report_command(const std::string& run_json, const std::string& output) {
  check_outputs({output}, {run_json});
  report::write_output(output, report::html_report(read_text_file(run_json, kRunFile), run_json), {run_json});
  std::printf("wrote %s\n", output.c_str());
  return 0;
}

}  // namespace tessera::cli
