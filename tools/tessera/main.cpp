// tessera: the command-line front end. It parses flags and calls the libraries; nothing else.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>

#include "tessera/arch/arch_spec.hpp"
#include "tessera/base/error.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/model/model_package.hpp"
#include "tessera/model/tokenizer.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/ref/generate.hpp"

namespace fs = std::filesystem;
using namespace tessera;

namespace {

fs::path data_dir() {
  if (const char* home = std::getenv("TESSERA_HOME"); home && *home) return home;
  return TESSERA_DATA_DIR;
}

struct RunFlags {
  std::string model = "default";
  std::string weights;
  std::string tokenizer_dir;
  std::string prompt = "It is a truth universally acknowledged, that";
  int64_t max_tokens = 64;
  double temperature = 0.8;
  int64_t top_k = 40;
  uint64_t seed = 0;
};

model::Tokenizer load_tokenizer(const ir::ModelConfig& config, const std::string& tokenizer_dir) {
  if (!tokenizer_dir.empty())
    return model::Tokenizer::load(fs::path(tokenizer_dir) / "encoder.json", fs::path(tokenizer_dir) / "vocab.bpe");
  if (!config.encoder_path)
    fail("model '{}' ships no tokenizer; pass --tokenizer DIR with GPT-2 style encoder.json and vocab.bpe",
         config.name);
  return model::Tokenizer::load(*config.encoder_path, *config.merges_path);
}

int run_command(const RunFlags& flags) {
  const ir::ModelConfig config = ir::load_model_config(model::resolve_model_config(flags.model, data_dir()));
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, flags.tokenizer_dir);
  if (tokenizer.vocab_size() > config.vocab_size)
    fail("the tokenizer has {} tokens but model '{}' has vocab_size {}", tokenizer.vocab_size(), config.name,
         config.vocab_size);
  model::Weights weights;
  if (flags.weights == "random") {
    weights = model::random_weights(graph, flags.seed);
  } else if (!flags.weights.empty()) {
    weights = model::load_weights(graph, flags.weights);
  } else if (config.weights_path) {
    weights = model::load_weights(graph, *config.weights_path);
  } else {
    fail(
        "model '{}' ships no weights; pass --weights FILE.safetensors, or --weights random for seeded random "
        "weights",
        config.name);
  }
  std::vector<int32_t> prompt = tokenizer.encode(flags.prompt);
  if (prompt.empty()) {
    if (!tokenizer.end_of_text()) fail("the prompt is empty and the tokenizer has no <|endoftext|> to start from");
    prompt.push_back(*tokenizer.end_of_text());
  }
  ref::ReferenceExecutor executor(graph, weights, config.context_length);
  ref::GenerationOptions options;
  options.max_new_tokens = flags.max_tokens;
  options.sampling = {flags.temperature, flags.top_k, flags.seed};
  options.stop_token = tokenizer.end_of_text();
  ref::check_generation_fits(static_cast<int64_t>(prompt.size()), options.max_new_tokens, executor.max_context());
  std::fwrite(flags.prompt.data(), 1, flags.prompt.size(), stdout);
  const auto result = ref::generate(executor, prompt, options, [&](int32_t token) {
    const std::string& bytes = tokenizer.token_bytes(token);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fflush(stdout);
  });
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
  std::printf("%-11s %-7s %11s %9s %9s %7s %12s  %s\n", "name", "fabric", "grid", "cores", "SRAM/core", "clock",
              "fp16 TMAC/s", "description");
  std::printf("%-11s %-7s %11s %9s %9s %7s %12s  %s\n", "host", "-", "-", "-", "-", "-", "-",
              "built-in reference executor: fp32 on this CPU (OpenBLAS), the numerical oracle");
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& file : fs::directory_iterator(data_dir() / "configs" / "arch", ec))
    if (file.path().extension() == ".yaml") files.push_back(file.path());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    const arch::ArchSpec a = arch::load_arch(file);
    std::printf("%-11s %-7s %11s %9s %6.0fKiB %5.2fGHz %12.1f  %s\n", a.name.c_str(), "mesh2d",
                fmt::format("{}x{}", a.usable.width, a.usable.height).c_str(), with_thousands(a.usable.cores()).c_str(),
                a.core.sram_bytes / 1024, a.clock_hz / 1e9, a.peak_macs_per_second("fp16") / 1e12,
                a.description.c_str());
  }
  return 0;
}

int compile_command(const std::string& model_name, const std::string& emit) {
  const ir::ModelConfig config = ir::load_model_config(model::resolve_model_config(model_name, data_dir()));
  const ir::Graph graph = ir::build_model_graph(config);
  if (const Status s = graph.verify(); !s) fail("model '{}' built an invalid graph: {}", config.name, s.message());
  if (emit == "ir") {
    std::printf("# %s: %s family, %lld parameters, %zu nodes\n", config.name.c_str(), ir::family_name(config.family),
                static_cast<long long>(graph.parameter_count()), graph.nodes().size());
    std::fputs(graph.dump().c_str(), stdout);
  } else {
    fail("--emit {} is not supported; choose: ir", emit);
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

int main(int argc, char** argv) {
  CLI::App app{
      "tessera runs transformer models on simulated AI accelerators and reports what they compute,\n"
      "how fast, with how much memory and energy, and why.\n\n"
      "Start with `tessera run` (the shipped default model writing text), `tessera models` and\n"
      "`tessera archs`. Every command takes --help."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tessera 0.1.0");

  RunFlags run;
  auto* run_cmd = app.add_subcommand("run", "Generate text: prefill the prompt, then decode token by token");
  run_cmd->add_option("-m,--model", run.model, "Model name (see `tessera models`), config file or model directory")
      ->capture_default_str();
  run_cmd->add_option("-w,--weights", run.weights,
                      "safetensors file (Hugging Face names), or 'random' for seeded random weights; default: the "
                      "model's shipped weights");
  run_cmd->add_option("--tokenizer", run.tokenizer_dir, "Directory with encoder.json and vocab.bpe (GPT-2 format)");
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

  std::string compile_model = "default", emit = "ir";
  auto* compile_cmd = app.add_subcommand("compile", "Build a model's IR and print it");
  compile_cmd->add_option("-m,--model", compile_model, "Model name, config file or model directory")
      ->capture_default_str();
  compile_cmd->add_option("--emit", emit, "What to print: ir (the verified tensor graph)")->capture_default_str();

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
    if (*compile_cmd) return compile_command(compile_model, emit);
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
