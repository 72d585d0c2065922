// tessera: the command-line front end. It parses flags and calls the libraries; nothing else.
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/compiler/exchange_compiler.hpp"
#include "tessera/compiler/gpu_compiler.hpp"
#include "tessera/compiler/mesh_compiler.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/model/model_package.hpp"
#include "tessera/model/quantize.hpp"
#include "tessera/model/tokenizer.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/ref/eval.hpp"
#include "tessera/ref/generate.hpp"
#include "tessera/report/compare.hpp"
#include "tessera/report/heatmap.hpp"
#include "tessera/report/mesh_report.hpp"
#include "tessera/sim/bsp_timing.hpp"
#include "tessera/sim/gpu_timing.hpp"
#include "tessera/sim/mesh_numerics.hpp"
#include "tessera/sim/mesh_timing.hpp"
#include "tessera/system/system.hpp"

namespace fs = std::filesystem;
using namespace tessera;

namespace {

fs::path data_dir() {
  if (const char* home = std::getenv("TESSERA_HOME"); home && *home) return home;
  return TESSERA_DATA_DIR;
}

// Progress on stderr for work that takes a while: a redrawn bar with an ETA on a terminal, a plain
// line every few seconds otherwise, nothing with --quiet or when the work finishes within a second.
class Progress {
 public:
  Progress(std::string what, bool quiet) : what_(std::move(what)), quiet_(quiet), tty_(isatty(fileno(stderr))) {}
  ~Progress() {
    if (drawn_ && tty_) std::fputs("\r\033[K", stderr);
  }

  void update(int64_t done, int64_t total) {
    if (quiet_ || total <= 0) return;
    const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    if (elapsed < 1.0 || (done < total && elapsed - last_ < (tty_ ? 0.1 : 5.0))) return;
    last_ = elapsed;
    const double fraction = static_cast<double>(done) / static_cast<double>(total);
    const double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0;
    if (tty_) {
      const int filled = static_cast<int>(fraction * 30);
      std::fprintf(stderr, "\r\033[K%s [%s%s] %lld/%lld, ETA %.1f s", what_.c_str(), std::string(filled, '#').c_str(),
                   std::string(30 - filled, ' ').c_str(), static_cast<long long>(done), static_cast<long long>(total),
                   eta);
    } else {
      std::fprintf(stderr, "%s: %lld/%lld (%.0f%%), %.1f s elapsed, ETA %.1f s\n", what_.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total), 100 * fraction, elapsed, eta);
    }
    std::fflush(stderr);
    drawn_ = true;
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string what_;
  bool quiet_, tty_, drawn_ = false;
  clock::time_point start_ = clock::now();
  double last_ = 0;
};

// Files a simulated run writes (empty: not written).
struct Outputs {
  std::string json, trace, heatmaps, csv;
  bool cycle_level = false;  // not a file: which fabric model times the run
  bool quiet = false;        // no progress lines
};

// The precision policy as given: a YAML file, then --dtype for all three formats, then the
// per-tensor flags, each overriding what came before ("" = not given).
struct PrecisionFlags {
  std::string file, dtype, weights, activations, kv, prune, scales;
  std::optional<int64_t> group;

  PrecisionPolicy resolve() const {
    PrecisionPolicy p = file.empty() ? PrecisionPolicy{} : arch::load_precision_policy(file);
    if (!dtype.empty()) p.weights = p.activations = p.kv = dtype;
    if (!weights.empty()) p.weights = weights;
    if (!activations.empty()) p.activations = activations;
    if (!kv.empty()) p.kv = kv;
    if (group) p.group = *group;
    if (!prune.empty()) p.prune = prune;
    if (!scales.empty()) p.scales = scales;
    p.validate();
    return p;
  }
};

struct RunFlags {
  std::string model = "default";
  std::string weights;
  std::string tokenizer_dir;
  std::string prompt = "It is a truth universally acknowledged, that";
  int64_t max_tokens = 64;
  double temperature = 0.8;
  int64_t top_k = 40;
  uint64_t seed = 0;
  std::string arch = "wse2";
  bool no_numerics = false;
  int64_t prompt_tokens = 0;    // timing-only: prompt length when there is no tokenizer
  int64_t batch = 1;            // GPUs: requests decoded together
  int64_t tensor_parallel = 1;  // GPUs: tensor-parallel group size
  PrecisionFlags precision;
  Outputs outputs;
};

std::vector<fs::path> preset_files() {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& file : fs::directory_iterator(data_dir() / "configs" / "arch", ec))
    if (file.path().extension() == ".yaml") files.push_back(file.path());
  std::sort(files.begin(), files.end());
  return files;
}

fs::path resolve_arch(const std::string& name_or_path) {
  if (fs::is_regular_file(name_or_path)) return name_or_path;
  const fs::path preset = data_dir() / "configs" / "arch" / (name_or_path + ".yaml");
  if (fs::is_regular_file(preset)) return preset;
  std::string names;
  for (const auto& f : preset_files()) names += (names.empty() ? "" : ", ") + f.stem().string();
  fail("unknown arch '{}': not a file and not a preset (host, {}); see `tessera archs`", name_or_path, names);
}

// Output files never replace a file tessera did not write (a plan or a metrics file); commands
// check their output paths before doing any work.
void check_output_path(const std::string& path) {
  if (path.empty()) return;
  if (fs::exists(path) && fs::is_directory(path)) fail("{}: is a directory", path);
  if (fs::exists(path) && fs::file_size(path) > 0) {
    const std::string existing = read_text_file(path);
    if (existing.find("\"format\": \"tessera-mesh-plan\"") == std::string::npos &&
        existing.find("\"schema\": \"tessera-run/") == std::string::npos &&
        existing.find("<title>tessera: ") == std::string::npos && !existing.starts_with("kind,name,stage,pattern"))
      fail("{}: exists and is not a file tessera wrote; choose another path (nothing was written)", path);
  }
}

void write_file(const std::string& path, const std::string& text) {
  check_output_path(path);
  std::ofstream out(path, std::ios::trunc);
  if (!out) fail("{}: cannot write", path);
  out << text;
  if (!out) fail("{}: write failed", path);
}

// Fails with what `arch` lacks and which shipped presets support the whole policy.
void check_arch_precision(const arch::ArchSpec& arch, const PrecisionPolicy& policy) {
  const Status s = arch::check_precision(arch, policy);
  if (s) return;
  std::string able;
  for (const auto& file : preset_files()) {
    const arch::ArchSpec preset = arch::load_arch(file);
    if (arch::check_precision(preset, policy)) able += (able.empty() ? "" : ", ") + preset.name;
  }
  fail("{}; {}", s.message(),
       able.empty() ? "no shipped preset supports " + policy.describe() + " (the host reference runs any policy)"
                    : "presets that support " + policy.describe() + ": " + able);
}

// Compiles for a mesh arch; result.status says what does not fit and what would.
compiler::MeshCompileResult compile_mesh_result(const fs::path& model_path, const std::string& arch_name,
                                                const compiler::MeshCompileOptions& options) {
  const ir::ModelConfig config = ir::load_model_config(model_path);
  const fs::path arch_path = resolve_arch(arch_name);
  const arch::ArchSpec arch = arch::load_arch(arch_path);
  check_arch_precision(arch, options.precision);
  return compiler::compile_for_mesh(config, read_text_file(model_path), model_path.string(), arch,
                                    read_text_file(arch_path), arch_path.string(), options);
}

// As compile_mesh_result; a plan that does not fit is a one-line error with what would fit.
program::Program compile_mesh(const fs::path& model_path, const std::string& arch_name,
                              const compiler::MeshCompileOptions& options) {
  auto result = compile_mesh_result(model_path, arch_name, options);
  if (!result.status) fail("{}", result.status.message());
  return std::move(result.program);
}

arch::FabricKind fabric_of(const std::string& arch_name) { return arch::load_arch(resolve_arch(arch_name)).fabric; }

// Compiles for a GPU (or a tensor-parallel group); a plan that does not fit is a one-line error.
compiler::GpuCompileResult compile_gpu(const fs::path& model_path, const std::string& arch_name,
                                       const compiler::GpuCompileOptions& options) {
  const ir::ModelConfig config = ir::load_model_config(model_path);
  const fs::path arch_path = resolve_arch(arch_name);
  const arch::ArchSpec arch = arch::load_arch(arch_path);
  check_arch_precision(arch, options.precision);
  return compiler::compile_for_gpu(config, read_text_file(model_path), model_path.string(), arch,
                                   read_text_file(arch_path), arch_path.string(), options);
}

// Compiles for an IPU; a plan that does not fit is a one-line error.
program::BspPlan compile_exchange(const fs::path& model_path, const std::string& arch_name,
                                  const compiler::ExchangeCompileOptions& options) {
  const ir::ModelConfig config = ir::load_model_config(model_path);
  const fs::path arch_path = resolve_arch(arch_name);
  const arch::ArchSpec arch = arch::load_arch(arch_path);
  check_arch_precision(arch, options.precision);
  auto result = compiler::compile_for_exchange(config, read_text_file(model_path), model_path.string(), arch,
                                               read_text_file(arch_path), arch_path.string(), options);
  if (!result.status) fail("{}", result.status.message());
  return std::move(result.plan);
}

// Heatmaps go into a directory tessera creates and marks, so it never writes into a user's own.
constexpr const char* kHeatmapMarker = ".tessera-heatmaps";

void check_heatmap_dir(const std::string& dir) {
  if (dir.empty() || !fs::exists(dir)) return;
  if (!fs::is_directory(dir) || (!fs::is_empty(dir) && !fs::exists(fs::path(dir) / kHeatmapMarker)))
    fail("{}: exists and is not a heatmap directory tessera made; choose a new directory (nothing was written)", dir);
}

void check_outputs(const Outputs& out) {
  check_output_path(out.json);
  check_output_path(out.trace);
  check_output_path(out.csv);
  check_heatmap_dir(out.heatmaps);
}

// activation_density: measured by a run with values (MeshDataPlane::activation_density), or empty.
int simulate_and_report(const program::Program& plan, const Outputs& out,
                        const std::map<std::string, double>& activation_density = {}) {
  Progress progress("simulating " + std::to_string(plan.stages.size()) + " stages", out.quiet);
  const sim::MeshReport report = sim::simulate_mesh_timing(
      plan, {!out.trace.empty(), out.cycle_level ? sim::FabricModel::CycleLevel : sim::FabricModel::Fast,
             [&](int64_t done, int64_t total) { progress.update(done, total); },
             !out.json.empty() || !out.heatmaps.empty(), activation_density});
  std::fputs(report::summary_table(report).c_str(), stdout);
  if (!out.json.empty()) write_file(out.json, report::to_json(plan, report));
  if (!out.csv.empty()) write_file(out.csv, report::steps_csv(report));
  if (!out.trace.empty()) write_file(out.trace, report::trace_json(report));
  if (!out.heatmaps.empty()) {
    const fs::path dir(out.heatmaps);
    fs::create_directories(dir);
    write_file((dir / kHeatmapMarker).string(), "");
    const char* names[] = {"sram", "compute", "energy", "links-east", "links-west", "links-north", "links-south"};
    const auto maps = report::mesh_heatmaps(report::run_figures(plan, report));
    for (size_t i = 0; i < maps.size(); ++i) {
      std::ofstream((dir / (std::string(names[i]) + ".svg"))) << report::heatmap_svg(maps[i]);
      report::write_heatmap_png(maps[i], dir / (std::string(names[i]) + ".png"));
    }
    std::printf("  heatmaps: %s/{sram,compute,energy,links-east,links-west,links-north,links-south}.{svg,png}\n",
                out.heatmaps.c_str());
  }
  return 0;
}

// The tokenizer from --tokenizer DIR or the model package; its vocabulary must be the model's.
model::Tokenizer load_tokenizer(const ir::ModelConfig& config, const std::string& tokenizer_dir) {
  if (tokenizer_dir.empty() && !config.encoder_path)
    fail("model '{}' ships no tokenizer; pass --tokenizer DIR with GPT-2 style encoder.json and vocab.bpe",
         config.name);
  model::Tokenizer tokenizer = tokenizer_dir.empty() ? model::Tokenizer::load(*config.encoder_path, *config.merges_path)
                                                     : model::Tokenizer::load(fs::path(tokenizer_dir) / "encoder.json",
                                                                              fs::path(tokenizer_dir) / "vocab.bpe");
  if (tokenizer.vocab_size() != config.vocab_size)
    fail("the tokenizer has {} tokens but model '{}' has vocab_size {}; use the tokenizer the model was trained with",
         tokenizer.vocab_size(), config.name, config.vocab_size);
  return tokenizer;
}

model::Weights load_unquantized_weights(const ir::ModelConfig& config, const ir::Graph& graph, const RunFlags& flags) {
  if (flags.weights == "random") return model::random_weights(graph, flags.seed);
  if (!flags.weights.empty()) return model::load_weights(graph, flags.weights);
  if (config.weights_path) return model::load_weights(graph, *config.weights_path);
  fail("model '{}' ships no weights; pass --weights FILE.safetensors, or --weights random for seeded random weights",
       config.name);
}

// The weights with the run's precision policy applied (the same values for every executor).
model::Weights load_run_weights(const ir::ModelConfig& config, const ir::Graph& graph, const RunFlags& flags,
                                const PrecisionPolicy& policy) {
  model::Weights weights = load_unquantized_weights(config, graph, flags);
  if (!policy.prune.empty()) weights = model::prune_weights(graph, weights, policy.prune);
  if (policy.weights == "fp32" && policy.scales == "auto") return weights;
  return model::quantize_weights(graph, weights, policy.weights, policy.group, policy.scales);
}

// Streams the prompt and each generated token to stdout as it is produced.
template <typename Executor>
ref::GenerationResult generate_text(Executor& executor, const model::Tokenizer& tokenizer,
                                    const std::vector<int32_t>& prompt, const RunFlags& flags) {
  ref::GenerationOptions options;
  options.max_new_tokens = flags.max_tokens;
  options.sampling = {flags.temperature, flags.top_k, flags.seed};
  options.stop_token = tokenizer.end_of_text();
  ref::check_generation_fits(static_cast<int64_t>(prompt.size()), options.max_new_tokens, executor.max_context());
  std::fwrite(flags.prompt.data(), 1, flags.prompt.size(), stdout);
  return ref::generate(executor, prompt, options, [&](int32_t token) {
    const std::string& bytes = tokenizer.token_bytes(token);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fflush(stdout);
  });
}

std::vector<int32_t> encode_prompt(const model::Tokenizer& tokenizer, const std::string& text) {
  std::vector<int32_t> prompt = tokenizer.encode(text);
  if (prompt.empty()) {
    if (!tokenizer.end_of_text()) fail("the prompt is empty and the tokenizer has no <|endoftext|> to start from");
    prompt.push_back(*tokenizer.end_of_text());
  }
  return prompt;
}

// Timing-only runs: --prompt-tokens, or the length of the tokenized prompt.
int64_t timing_prompt_tokens(const ir::ModelConfig& config, const RunFlags& flags) {
  if (flags.prompt_tokens != 0) return flags.prompt_tokens;
  if (!config.encoder_path && flags.tokenizer_dir.empty())
    fail("model '{}' ships no tokenizer; give the prompt length with --prompt-tokens N", config.name);
  return static_cast<int64_t>(encode_prompt(load_tokenizer(config, flags.tokenizer_dir), flags.prompt).size());
}

int run_on_mesh(const fs::path& model_path, const RunFlags& flags, const PrecisionPolicy& policy) {
  const ir::ModelConfig config = ir::load_model_config(model_path);
  if (flags.no_numerics)
    return simulate_and_report(
        compile_mesh(model_path, flags.arch, {timing_prompt_tokens(config, flags), flags.max_tokens, policy}),
        flags.outputs);
  if (flags.prompt_tokens != 0) fail("--prompt-tokens is for --no-numerics runs; with values the prompt decides");
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, flags.tokenizer_dir);
  const std::vector<int32_t> prompt = encode_prompt(tokenizer, flags.prompt);
  const program::Program plan =
      compile_mesh(model_path, flags.arch, {static_cast<int64_t>(prompt.size()), flags.max_tokens, policy});
  const model::Weights weights = load_run_weights(config, graph, flags, policy);
  sim::MeshDataPlane mesh(plan, weights);
  const auto wall_start = std::chrono::steady_clock::now();
  const auto result = generate_text(mesh, tokenizer, prompt, flags);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  std::printf("\n\n");
  simulate_and_report(plan, flags.outputs, mesh.activation_density());
  std::printf(
      "  host: %lld cores' SRAM arenas (largest %.1f KiB); simulated with values in %.2f s wall, %.3f s per "
      "decoded token\n",
      static_cast<long long>(mesh.cores_allocated()), static_cast<double>(mesh.largest_arena_bytes()) / 1024, wall,
      result.tokens.size() > 1 ? result.decode_seconds / static_cast<double>(result.tokens.size() - 1) : 0.0);
  return 0;
}

// A GPU or IPU run: the values are the reference executor's (these chips compute the same
// arithmetic under the same precision policy), the timing is the chip model's.
int run_kernel_by_kernel(const fs::path& model_path, const RunFlags& flags, const PrecisionPolicy& policy,
                         arch::FabricKind fabric) {
  const ir::ModelConfig config = ir::load_model_config(model_path);
  if (!flags.outputs.json.empty() || !flags.outputs.trace.empty() || !flags.outputs.heatmaps.empty() ||
      !flags.outputs.csv.empty())
    fail(
        "--json, --csv, --trace and --heatmaps describe mesh machines; for GPUs and IPUs use `tessera compare --json`");
  if (fabric == arch::FabricKind::Exchange && flags.tensor_parallel != 1)
    fail(
        "--tp is for GPU-like chips; an IPU model that does not fit one chip runs as a pipeline: `tessera compare "
        "--arch Nx{}`",
        flags.arch);
  int64_t prompt_tokens = 0;
  if (flags.no_numerics) {
    prompt_tokens = timing_prompt_tokens(config, flags);
  } else {
    if (flags.prompt_tokens != 0) fail("--prompt-tokens is for --no-numerics runs; with values the prompt decides");
    const ir::Graph graph = ir::build_model_graph(config);
    const model::Tokenizer tokenizer = load_tokenizer(config, flags.tokenizer_dir);
    const std::vector<int32_t> prompt = encode_prompt(tokenizer, flags.prompt);
    prompt_tokens = static_cast<int64_t>(prompt.size());
    const model::Weights weights = load_run_weights(config, graph, flags, policy);
    ref::ReferenceExecutor executor(graph, weights, config.context_length, policy);
    generate_text(executor, tokenizer, prompt, flags);
    std::printf("\n\n");
  }
  if (fabric == arch::FabricKind::Exchange) {
    const program::BspPlan plan =
        compile_exchange(model_path, flags.arch, {prompt_tokens, flags.max_tokens, flags.batch, policy});
    std::fputs(report::bsp_summary_table(sim::simulate_bsp(plan)).c_str(), stdout);
    return 0;
  }
  const auto result = compile_gpu(model_path, flags.arch,
                                  {prompt_tokens, flags.max_tokens, flags.batch, flags.tensor_parallel, policy});
  if (!result.status) fail("{}", result.status.message());
  std::fputs(report::gpu_summary_table(sim::simulate_gpu(result.plan)).c_str(), stdout);
  return 0;
}

int eval_command(const RunFlags& flags, const std::string& text_path, int64_t window) {
  const fs::path model_path = model::resolve_model_config(flags.model, data_dir());
  const ir::ModelConfig config = ir::load_model_config(model_path);
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, flags.tokenizer_dir);
  const std::vector<int32_t> tokens = tokenizer.encode(read_text_file(text_path));
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
    const program::Program plan = compile_mesh(model_path, flags.arch, {window, 0, policy});
    sim::MeshDataPlane mesh(plan, weights);
    p = ref::evaluate_perplexity(mesh, tokens, window, on_window);
  }
  std::printf("%s on %s, %s: perplexity %.4f (%.4f nats/token) over %lld tokens of %s in %lld windows of %lld\n",
              config.name.c_str(), flags.arch.c_str(), policy.describe().c_str(), p.perplexity, p.mean_nll,
              static_cast<long long>(p.tokens_scored), text_path.c_str(), static_cast<long long>(p.windows),
              static_cast<long long>(window));
  return 0;
}

int run_command(const RunFlags& flags) {
  check_outputs(flags.outputs);
  if (flags.arch == "host" &&
      (!flags.outputs.json.empty() || !flags.outputs.trace.empty() || !flags.outputs.heatmaps.empty()))
    fail("--json, --trace and --heatmaps report a simulated machine; choose one with --arch (see `tessera archs`)");
  const fs::path model_path = model::resolve_model_config(flags.model, data_dir());
  const PrecisionPolicy policy = flags.precision.resolve();
  if (flags.arch != "host" && fabric_of(flags.arch) != arch::FabricKind::Mesh2D)
    return run_kernel_by_kernel(model_path, flags, policy, fabric_of(flags.arch));
  if (flags.batch != 1 || flags.tensor_parallel != 1)
    fail(
        "--batch and --tp are for GPUs and IPUs; wafer batching and multi-wafer systems: `tessera compare --batch "
        "B --arch Nx{}`",
        flags.arch);
  if (flags.arch != "host") return run_on_mesh(model_path, flags, policy);
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

struct CompareFlags {
  std::string model = "default";
  std::vector<std::string> archs = {"wse2", "h100"};
  int64_t prompt_tokens = 128, max_tokens = 128;
  std::vector<int64_t> batches = {1};
  int64_t tensor_parallel = 0;
  PrecisionFlags precision;
  std::string json, csv;
  bool numerics = false;  // also generate greedily with values on every single-chip arch
  std::string weights;    // for --numerics: a safetensors file, or "random"
  uint64_t seed = 0;
};

// --numerics: greedy tokens from a seeded prompt of token ids, on the host reference and on each
// machine's executor, under the same precision policy.
class NumericsCheck {
 public:
  NumericsCheck(const fs::path& model_path, const CompareFlags& flags, const PrecisionPolicy& policy)
      : model_path_(model_path),
        flags_(flags),
        policy_(policy),
        config_(ir::load_model_config(model_path)),
        graph_(ir::build_model_graph(config_)) {
    RunFlags run;
    run.weights = flags.weights, run.seed = flags.seed;
    weights_ = load_run_weights(config_, graph_, run, policy);
    std::mt19937_64 rng(flags.seed);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(config_.vocab_size - 1));
    for (int64_t i = 0; i < flags.prompt_tokens; ++i) prompt_.push_back(id(rng));
    ref::ReferenceExecutor host(graph_, weights_, config_.context_length, policy);
    reference_ = greedy(host);
  }

  // "= reference", or where the tokens first differ. Systems of several chips are not checked.
  std::string check(const std::string& arch_name, int64_t chips) {
    if (chips != 1) return "not checked (systems)";
    const arch::ArchSpec arch = arch::load_arch(resolve_arch(arch_name));
    if (!arch::check_precision(arch, policy_)) return "-";
    std::vector<int32_t> tokens;
    if (arch.fabric == arch::FabricKind::Mesh2D) {
      auto result = compile_mesh_result(model_path_, arch_name, {flags_.prompt_tokens, flags_.max_tokens, policy_});
      if (!result.status) return "-";
      sim::MeshDataPlane mesh(result.program, weights_);
      tokens = greedy(mesh);
    } else {
      // GPUs and IPUs compute the reference's arithmetic under the same policy: tessera has no
      // per-SM or per-tile data plane for them, so their values are the reference's own.
      return "= reference (host values)";
    }
    for (size_t i = 0; i < reference_.size(); ++i)
      if (i >= tokens.size() || tokens[i] != reference_[i]) return fmt::format("differ at token {}", i);
    return "= reference";
  }

 private:
  template <typename Executor>
  std::vector<int32_t> greedy(Executor& executor) {
    ref::GenerationOptions options;
    options.max_new_tokens = flags_.max_tokens;
    return ref::generate(executor, prompt_, options).tokens;
  }

  fs::path model_path_;
  const CompareFlags& flags_;
  PrecisionPolicy policy_;
  ir::ModelConfig config_;
  ir::Graph graph_;
  model::Weights weights_;
  std::vector<int32_t> prompt_, reference_;
};

// One model on several machines (a preset, or a system COUNTxPRESET), timing-only: a row per
// machine and batch size.
int compare_command(const CompareFlags& flags) {
  check_output_path(flags.json);
  check_output_path(flags.csv);
  const fs::path model_path = model::resolve_model_config(flags.model, data_dir());
  PrecisionFlags precision = flags.precision;
  if (precision.dtype.empty() && precision.file.empty()) precision.dtype = "fp16";
  system::Workload work;
  work.model = ir::load_model_config(model_path);
  work.model_yaml = read_text_file(model_path), work.model_origin = model_path.string();
  work.prompt_tokens = flags.prompt_tokens, work.max_new_tokens = flags.max_tokens;
  work.tensor_parallel = flags.tensor_parallel;
  work.precision = precision.resolve();
  std::optional<NumericsCheck> numerics;
  if (flags.numerics) numerics.emplace(model_path, flags, work.precision);
  std::vector<report::CompareRow> rows;
  for (const std::string& text : flags.archs) {
    const auto [chips, name] = system::parse_machine_name(text);
    const fs::path arch_path = resolve_arch(name);
    const system::Machine machine{arch::load_arch(arch_path), read_text_file(arch_path), arch_path.string(), chips};
    const std::string values = numerics ? numerics->check(name, chips) : "";
    for (const int64_t batch : flags.batches) {
      work.batch = batch;
      report::CompareRow row = report::compare_row(text, flags.model, batch, system::evaluate(machine, work));
      if (!row.fits) row.chips = chips;
      row.tokens = values;
      rows.push_back(row);
    }
  }
  std::printf("%s, %lld prompt + %lld generated tokens per request, %s (%s)\n", flags.model.c_str(),
              static_cast<long long>(flags.prompt_tokens), static_cast<long long>(flags.max_tokens),
              work.precision.describe().c_str(),
              flags.numerics ? "greedy tokens checked against the host reference" : "timing-only");
  std::fputs(report::compare_table(rows).c_str(), stdout);
  if (!flags.json.empty()) write_file(flags.json, report::compare_json(rows));
  if (!flags.csv.empty()) write_file(flags.csv, report::compare_csv(rows));
  return 0;
}

struct CompileFlags {
  std::string model = "default";
  std::string emit = "ir";
  std::string arch;
  std::string output;
  int64_t prompt_tokens = 16;
  int64_t max_tokens = 64;
  int64_t batch = 1;
  int64_t tensor_parallel = 1;
  PrecisionFlags precision;
};

// `tessera simulate PLAN`: any plan `compile --arch` writes, told apart by its format field.
int simulate_command(const std::string& plan_path, const Outputs& outputs) {
  check_outputs(outputs);
  const std::string text = read_text_file(plan_path);
  const bool gpu = text.find("\"format\": \"tessera-gpu-plan\"") != std::string::npos;
  const bool bsp = text.find("\"format\": \"tessera-bsp-plan\"") != std::string::npos;
  if ((gpu || bsp) &&
      (!outputs.json.empty() || !outputs.trace.empty() || !outputs.heatmaps.empty() || !outputs.csv.empty()))
    fail(
        "--json, --csv, --trace and --heatmaps describe mesh machines; for GPUs and IPUs use `tessera compare --json`");
  if (gpu) {
    std::fputs(report::gpu_summary_table(sim::simulate_gpu(program::gpu_plan_from_json(text, plan_path))).c_str(),
               stdout);
    return 0;
  }
  if (bsp) {
    std::fputs(report::bsp_summary_table(sim::simulate_bsp(program::bsp_plan_from_json(text, plan_path))).c_str(),
               stdout);
    return 0;
  }
  return simulate_and_report(program::from_json(text, plan_path), outputs);
}

int compile_command(const CompileFlags& flags) {
  check_output_path(flags.output);
  const fs::path model_path = model::resolve_model_config(flags.model, data_dir());
  if (!flags.arch.empty()) {
    if (flags.output.empty()) fail("compiling for --arch {} needs -o PLAN.json", flags.arch);
    const PrecisionPolicy policy = flags.precision.resolve();
    const arch::FabricKind fabric = fabric_of(flags.arch);
    if (fabric == arch::FabricKind::SharedMemory) {
      const auto result = compile_gpu(
          model_path, flags.arch, {flags.prompt_tokens, flags.max_tokens, flags.batch, flags.tensor_parallel, policy});
      if (!result.status) fail("{}", result.status.message());
      write_file(flags.output, program::to_json(result.plan));
    } else if (fabric == arch::FabricKind::Exchange) {
      if (flags.tensor_parallel != 1) fail("--tp is for GPU-like chips");
      write_file(flags.output,
                 program::to_json(compile_exchange(model_path, flags.arch,
                                                   {flags.prompt_tokens, flags.max_tokens, flags.batch, policy})));
    } else {
      if (flags.batch != 1 || flags.tensor_parallel != 1)
        fail("--batch and --tp are for GPUs and IPUs; wafer batching: `tessera compare --batch B`");
      const program::Program plan =
          compile_mesh(model_path, flags.arch, {flags.prompt_tokens, flags.max_tokens, policy});
      write_file(flags.output, program::to_json(plan));
      std::fputs(report::placement_table(plan).c_str(), stdout);
    }
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

}  // namespace

// CLI11's built-in NonNegativeNumber prints the whole double range in its message; this says it plainly.
const CLI::Validator kNonNegative(
    [](std::string& value) -> std::string {
      return !value.empty() && value[0] == '-' ? "must be >= 0, got " + value : std::string();
    },
    ">= 0");

// The precision policy (run, eval, compile); docs/precision.md.
void add_precision_options(CLI::App* cmd, PrecisionFlags& p) {
  cmd->add_option("--precision", p.file, "Precision policy YAML (keys weights, group, activations, kv, prune)");
  cmd->add_option("--dtype", p.dtype, "One format for weights, activations and KV cache (default fp32)");
  cmd->add_option("--weights-format", p.weights,
                  "Weights: fp32, bf16, fp16, fp8_e4m3, fp8_e5m2, int8 (per channel), int4 (per group), ternary");
  cmd->add_option("--activations-format", p.activations,
                  "Inputs of every linear layer, the MAC dtype: fp32, bf16, fp16, fp8_e4m3, fp8_e5m2");
  cmd->add_option("--kv-format", p.kv, "KV cache: fp32, bf16, fp16, fp8_e4m3, fp8_e5m2");
  cmd->add_option("--scales", p.scales,
                  "Weight scales: auto (int8 per channel, int4 per group, ternary per tensor, floats none), none, "
                  "tensor, channel, group");
  cmd->add_option("--group", p.group, "Inputs per scale with --scales group (default 32)");
  cmd->add_option("--prune", p.prune,
                  "Prune matrices first: unstructured:DENSITY, N:M (e.g. 2:4), blockK:DENSITY (e.g. block16:0.5)");
}

// Options shared by the commands that load a model with weights (run, eval).
void add_model_options(CLI::App* cmd, RunFlags& flags) {
  cmd->add_option("-m,--model", flags.model, "Model name (see `tessera models`), config file or model directory")
      ->capture_default_str();
  cmd->add_option("-w,--weights", flags.weights,
                  "safetensors file (Hugging Face names), or 'random' for seeded random weights; default: the "
                  "model's shipped weights");
  cmd->add_option("--tokenizer", flags.tokenizer_dir, "Directory with encoder.json and vocab.bpe (GPT-2 format)");
  add_precision_options(cmd, flags.precision);
}

// Options shared by the commands that simulate a machine (run, simulate).
void add_output_options(CLI::App* cmd, Outputs& out) {
  cmd->add_option("--json", out.json, "Write all metrics as JSON (schema: docs/metrics.md)");
  cmd->add_option("--csv", out.csv, "Write per-phase and per-op rows as CSV");
  cmd->add_flag("-q,--quiet", out.quiet, "No progress lines on stderr");
  cmd->add_option("--trace", out.trace, "Write the simulated timeline (Chrome/Perfetto trace JSON)");
  cmd->add_option("--heatmaps", out.heatmaps, "Write per-core heatmaps (SVG and PNG) into this new directory");
}

int main(int argc, char** argv) {
  CLI::App app{
      "tessera runs transformer models on simulated AI accelerators and reports what they compute,\n"
      "how fast, with how much memory and energy, and why.\n\n"
      "Start with `tessera run` (the shipped default model writing text), `tessera models` and\n"
      "`tessera archs`. Every command takes --help."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tessera 0.1.0");

  RunFlags run;
  auto* run_cmd = app.add_subcommand(
      "run", "Generate text on a simulated machine (default: wse2) or the host reference, and report it");
  add_model_options(run_cmd, run);
  add_output_options(run_cmd, run.outputs);
  run_cmd->add_option("-p,--prompt", run.prompt, "Prompt text")->capture_default_str();
  run_cmd->add_option("-n,--max-tokens", run.max_tokens, "Number of tokens to generate")
      ->capture_default_str()
      ->check(kNonNegative);
  run_cmd->add_option("-t,--temperature", run.temperature, "Sampling temperature; 0 = greedy")
      ->capture_default_str()
      ->check(kNonNegative);
  run_cmd->add_option("-k,--top-k", run.top_k, "Sample among the k most likely tokens; 0 = all")
      ->capture_default_str()
      ->check(kNonNegative);
  run_cmd->add_option("-s,--seed", run.seed, "Seed for sampling and for --weights random")->capture_default_str();
  run_cmd
      ->add_option("-a,--arch", run.arch, "Machine: host (reference executor) or a preset/file (see `tessera archs`)")
      ->capture_default_str();
  run_cmd->add_flag("--no-numerics", run.no_numerics, "Timing and energy only, no tensor values");
  run_cmd->add_option("--batch", run.batch, "GPUs: requests decoded together")->capture_default_str();
  run_cmd->add_option("--tp", run.tensor_parallel, "GPUs: tensor-parallel group size")->capture_default_str();
  run_cmd
      ->add_option("--prompt-tokens", run.prompt_tokens, "Timing-only: prompt length in tokens (default: the prompt's)")
      ->check(kNonNegative);

  CompileFlags compile;
  auto* compile_cmd =
      app.add_subcommand("compile", "Print a model's IR, or compile it for a mesh machine into a plan file");
  compile_cmd->add_option("-m,--model", compile.model, "Model name, config file or model directory")
      ->capture_default_str();
  compile_cmd->add_option("--emit", compile.emit, "What to print without --arch: ir (the verified tensor graph)")
      ->capture_default_str();
  compile_cmd->add_option("-a,--arch", compile.arch, "Compile for this machine (see `tessera archs`)");
  compile_cmd->add_option("--batch", compile.batch, "GPUs and IPUs: requests decoded together")->capture_default_str();
  compile_cmd->add_option("--tp", compile.tensor_parallel, "GPUs: tensor-parallel group size")->capture_default_str();
  compile_cmd->add_option("-o,--output", compile.output, "Plan file to write (JSON), with --arch");
  compile_cmd->add_option("--prompt-tokens", compile.prompt_tokens, "Prompt length the plan serves")
      ->capture_default_str()
      ->check(kNonNegative);
  compile_cmd->add_option("-n,--max-tokens", compile.max_tokens, "Tokens to generate")
      ->capture_default_str()
      ->check(kNonNegative);
  add_precision_options(compile_cmd, compile.precision);

  std::string plan_path;
  Outputs simulate_outputs;
  auto* simulate_cmd = app.add_subcommand("simulate", "Simulate a plan written by `tessera compile --arch`");
  simulate_cmd->add_option("plan", plan_path, "Plan file (JSON)")->required();
  add_output_options(simulate_cmd, simulate_outputs);
  simulate_cmd->add_flag(
      "--cycle-level", simulate_outputs.cycle_level,
      "Time every collective wavelet by wavelet (meshes up to 64x64; slow) instead of the fast model");

  RunFlags eval;
  eval.arch = "host";
  std::string eval_text;
  int64_t eval_window = 0;
  auto* eval_cmd = app.add_subcommand("eval", "Perplexity of a model on a text file");
  add_model_options(eval_cmd, eval);
  eval_cmd->add_option("--text", eval_text, "Text file to score")->required();
  eval_cmd->add_option("--window", eval_window, "Tokens per window (default: the model's context)")
      ->check(kNonNegative);
  eval_cmd->add_option("-a,--arch", eval.arch, "host, or a machine whose data plane computes the values")
      ->capture_default_str();
  eval_cmd->add_option("-s,--seed", eval.seed, "Seed for --weights random")->capture_default_str();
  eval_cmd->add_flag("-q,--quiet", eval.outputs.quiet, "No progress lines on stderr");

  std::string report_input, report_output;
  auto* report_cmd = app.add_subcommand("report", "Turn a run's JSON (--json) into one self-contained HTML page");
  report_cmd->add_option("run", report_input, "Run metrics (JSON written by run/simulate --json)")->required();
  report_cmd->add_option("-o,--output", report_output, "HTML file to write")->required();

  CompareFlags compare;
  auto* compare_cmd = app.add_subcommand("compare", "One model on several machines side by side (timing-only)");
  compare_cmd->add_option("-m,--model", compare.model, "Model name, config file or model directory")
      ->capture_default_str();
  compare_cmd
      ->add_option("-a,--arch", compare.archs,
                   "Machines, comma-separated: presets (see `tessera archs`) or systems COUNTxPRESET (4xwse3)")
      ->delimiter(',')
      ->capture_default_str();
  compare_cmd->add_option("--prompt-len", compare.prompt_tokens, "Prompt tokens per request")
      ->capture_default_str()
      ->check(kNonNegative);
  compare_cmd->add_option("--gen", compare.max_tokens, "Tokens generated per request")
      ->capture_default_str()
      ->check(kNonNegative);
  compare_cmd->add_option("--batch", compare.batches, "Batch sizes, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  compare_cmd->add_option("--tp", compare.tensor_parallel,
                          "GPU-like chips: tensor-parallel group size (default: the smallest that fits)");
  add_precision_options(compare_cmd, compare.precision);
  compare_cmd->add_flag("--numerics", compare.numerics,
                        "Also generate greedily with values on every single-chip machine and check the tokens "
                        "against the host reference (needs weights: shipped, --weights FILE or --weights random)");
  compare_cmd->add_option("-w,--weights", compare.weights, "With --numerics: safetensors file, or 'random'");
  compare_cmd->add_option("-s,--seed", compare.seed, "With --numerics: seed for the prompt and random weights")
      ->capture_default_str();
  compare_cmd->add_option("--json", compare.json, "Write the rows as JSON");
  compare_cmd->add_option("--csv", compare.csv, "Write the rows as CSV");

  auto* models_cmd = app.add_subcommand("models", "List the models that ship, with shapes and parameter counts");
  auto* archs_cmd = app.add_subcommand("archs", "List the machines that ship");

  std::string known;
  bool is_known = false;
  for (const auto* sub : app.get_subcommands({})) {
    known += (known.empty() ? "" : ", ") + sub->get_name();
    is_known = is_known || (argc > 1 && sub->get_name() == argv[1]);
  }
  if (argc > 1 && argv[1][0] != '-' && !is_known) {
    std::fprintf(stderr, "tessera: error: unknown command '%s'; commands are: %s (see --help)\n", argv[1],
                 known.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*run_cmd) return run_command(run);
    if (*compile_cmd) return compile_command(compile);
    if (*compare_cmd) return compare_command(compare);
    if (*simulate_cmd) return simulate_command(plan_path, simulate_outputs);
    if (*eval_cmd) return eval_command(eval, eval_text, eval_window);
    if (*report_cmd) {
      check_output_path(report_output);
      write_file(report_output, report::html_report(read_text_file(report_input), report_input));
      std::printf("wrote %s\n", report_output.c_str());
      return 0;
    }
    if (*models_cmd) return models_command();
    if (*archs_cmd) return archs_command();
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tessera: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "tessera: error: out of host memory\n");
    return 1;
  }
  return 0;
}
