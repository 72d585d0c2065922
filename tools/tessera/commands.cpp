#include "commands.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tessera/api/compare.hpp"
#include "tessera/api/gemm.hpp"
#include "tessera/api/run.hpp"
#include "tessera/api/sweep.hpp"
#include "tessera/api/train.hpp"
#include "tessera/api/validate.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/model/model_package.hpp"
#include "tessera/report/compare.hpp"
#include "tessera/report/mesh_report.hpp"
#include "tessera/report/output_files.hpp"
#include "tessera/report/training_report.hpp"
#include "tessera/report/validation.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/registry.hpp"
#ifdef TESSERA_HAVE_MPI
#include "tessera/sweep/mpi_sweep.hpp"
#endif

namespace tessera::cli {

int eval_command(const RunFlags& flags, const std::string& text_path, int64_t window) {
  const PrecisionPolicy policy = flags.precision.resolve();
  Progress progress("evaluating", flags.outputs.quiet);
  const api::EvalResult r =
      api::eval({flags.model, flags.arch, flags.weights, flags.tokenizer_dir, flags.seed, text_path, window, policy},
                [&](int64_t done, int64_t total) { progress.update(done, total); });
  const ref::Perplexity& p = r.perplexity;
  std::printf("%s on %s, %s: perplexity %.4f (%.4f nats/token) over %lld tokens of %s in %lld windows of %lld\n",
              r.model_name.c_str(), flags.arch.c_str(), policy.describe().c_str(), p.perplexity, p.mean_nll,
              static_cast<long long>(p.tokens_scored), text_path.c_str(), static_cast<long long>(p.windows),
              static_cast<long long>(r.window));
  return 0;
}

// `tessera train --arch MACHINE --no-numerics`: one step's time, memory and energy.
int train_on_machine_command(const TrainFlags& flags) {
  target::TrainingWork work = flags.work;
  work.seq = flags.request.seq;
  work.recompute = ir::parse_recompute(flags.recompute);
  work.attention = target::parse_attention_kernel(flags.attention);
  work.sequence_parallel = !flags.no_sequence_parallel;
  const std::vector<fs::path> inputs = {resolve_model(flags.request.model)};
  check_outputs({flags.json, flags.trace}, inputs);
  const target::TrainingOutcome outcome = api::train_on_machine(flags.request.model, flags.arch, work);
  if (!outcome.status) fail("{}", outcome.status.message());
  const target::TrainingReport& r = outcome.report;
  std::fputs(report::training_step_text(r, flags.arch).c_str(), stdout);
  if (!flags.json.empty()) report::write_output(flags.json, report::training_step_json(r, flags.arch), inputs);
  if (!flags.trace.empty()) report::write_output(flags.trace, report::training_trace_json(r), inputs);
  return 0;
}

int train_command(const TrainFlags& flags) {
  if (flags.no_numerics) {
    if (flags.arch == "host") fail("--no-numerics needs a machine (--arch 1024xh100, 16xwse2, ...)");
    if (!flags.request.text_path.empty()) fail("--text is for training with values; --no-numerics reads no text");
    return train_on_machine_command(flags);
  }
  if (!flags.json.empty() || !flags.trace.empty())
    fail(
        "--json and --trace describe one step on a machine (--arch ... --no-numerics); on the host, -o DIR keeps "
        "the loss curve");
  api::TrainRequest request = flags.request;
  if (flags.arch != "host") request.arch = flags.arch;
  request.options.recompute = ir::parse_recompute(flags.recompute);
  if (flags.optimizer == "sgd") {
    request.options.optimizer.kind = ir::OptimizerKind::Sgd;
  } else if (flags.optimizer != "adamw") {
    fail("--optimizer {}: expected adamw or sgd", flags.optimizer);
  }
  const bool tty = isatty(fileno(stderr));
  const api::TrainResult r = api::train(request, [&](const api::TrainStep& s, int64_t steps) {
    if (flags.quiet) return;
    const double eta = s.elapsed_s / static_cast<double>(s.step) * static_cast<double>(steps - s.step);
    std::string held = s.held_out ? fmt::format(", held-out {:.4f}", *s.held_out) : "";
    if (s.skipped) held += fmt::format(", skipped: a gradient overflowed at loss scale {:g}", s.loss_scale);
    if (tty && !s.held_out && !s.skipped && s.step != steps) {
      std::fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.2e  %.0f tokens/s  ETA %.0f s",
                   static_cast<long long>(s.step), static_cast<long long>(steps), s.loss, s.lr, s.tokens_per_s, eta);
    } else {
      std::fprintf(stderr, "%sstep %lld/%lld  loss %.4f  lr %.2e  %.0f tokens/s  ETA %.0f s%s\n", tty ? "\r\033[K" : "",
                   static_cast<long long>(s.step), static_cast<long long>(steps), s.loss, s.lr, s.tokens_per_s, eta,
                   held.c_str());
    }
    std::fflush(stderr);
  });
  std::printf("%s: %lld parameters, %lld training and %lld held-out tokens\n", r.model_name.c_str(),
              static_cast<long long>(r.parameters), static_cast<long long>(r.train_tokens),
              static_cast<long long>(r.held_out_tokens));
  if (!r.chip_layout.empty()) std::printf("on one %s: %s\n", request.arch.c_str(), r.chip_layout.c_str());
  if (r.resumed_from > 0) std::printf("resumed after step %lld\n", static_cast<long long>(r.resumed_from));
  if (!r.history.empty())
    std::printf("steps %lld: training loss %.4f -> %.4f, held-out loss %.4f -> %.4f (perplexity %.1f -> %.1f)\n",
                static_cast<long long>(r.history.back().step), r.history.front().loss, r.history.back().loss,
                r.initial_held_out, r.final_held_out, std::exp(r.initial_held_out), std::exp(r.final_held_out));
  int64_t skipped = 0;
  for (const auto& s : r.history) skipped += s.skipped ? 1 : 0;
  if (skipped > 0)
    std::printf("%lld steps skipped by loss scaling (a gradient overflowed in fp16)\n",
                static_cast<long long>(skipped));
  std::printf(
      "%.0f tokens/s on this host (reference trainer%s, %s)\n", r.tokens_per_s,
      request.arch.empty() ? "" : (" in " + request.arch + "'s arithmetic order").c_str(),
      request.precision == "fp32" ? "fp32" : (request.precision + " matrix products, fp32 master weights").c_str());
  if (!request.out_dir.empty())
    std::printf("checkpoint: %s (tessera run -m %s; loss.csv, loss.svg)\n", request.out_dir.c_str(),
                request.out_dir.c_str());
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
  const Outputs& out = flags.outputs;
  if (flags.arch == "host" && (!out.json.empty() || !out.csv.empty() || !out.trace.empty() || !out.heatmaps.empty()))
    fail(
        "--json, --csv, --trace and --heatmaps report a simulated machine; choose one with --arch (see `tessera "
        "archs`)");
  if (!flags.logits.empty()) {
    if (flags.no_numerics) fail("--logits writes the values a run computes; --no-numerics computes none");
    check_outputs({flags.logits, out.json, out.csv, out.trace}, out.inputs);
  }
  Progress progress("simulating", out.quiet);
  api::RunRequest request{.model = flags.model,
                          .arch = flags.arch,
                          .weights = flags.weights,
                          .tokenizer_dir = flags.tokenizer_dir,
                          .prompt = flags.prompt,
                          .prompt_tokens = flags.prompt_tokens,
                          .max_new_tokens = flags.max_tokens,
                          .sampling = {flags.temperature, flags.top_k, flags.seed},
                          .values = !flags.no_numerics,
                          .keep_logits = !flags.logits.empty(),
                          .batch = flags.batch,
                          .tensor_parallel = flags.tensor_parallel,
                          .expert_parallel = flags.expert_parallel,
                          .precision = flags.precision.resolve(),
                          .routing = compiler::parse_routing(flags.routing),
                          .simulate = simulate_options(out, progress)};
  if (flags.arch != "host" && !out.heatmaps.empty())
    report::check_heatmaps(run_files(out), load_target(flags.arch, request.precision)->capabilities().core_heatmaps,
                           flags.arch);
  const api::RunResult result = api::run(request, [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  });
  const ref::GenerationResult& g = result.generation;
  if (request.values) std::printf("\n\n");
  for (const auto& m : g.masks) {
    std::printf("[MASK] at token %lld:", static_cast<long long>(m.position));
    for (size_t i = 0; i < m.ids.size(); ++i)
      std::printf("%s %s %.3f", i == 0 ? "" : ",", m.tokens[i].c_str(), m.probabilities[i]);
    std::printf("\n");
  }
  if (!g.masks.empty()) std::printf("\n");
  if (!flags.logits.empty()) {
    const int64_t rows = g.logit_rows();
    const int64_t vocab = rows > 0 ? static_cast<int64_t>(g.logits.size()) / rows : 0;
    report::write_output(flags.logits, report::npy_f32(g.logits, {rows, vocab}), out.inputs);
  }
  if (!result.report && !g.masks.empty()) {
    std::printf("[%s on host reference executor, fp32] %lld tokens in one pass (an encoder): %.1f ms\n",
                ir::load_model_config(model_path).name.c_str(), static_cast<long long>(g.prompt_tokens),
                g.prefill_seconds * 1e3);
    return 0;
  }
  if (!result.report) {
    const double decode_steps = static_cast<double>(g.tokens.size() > 0 ? g.tokens.size() - 1 : 0);
    std::printf(
        "[%s on host reference executor, fp32] %lld prompt tokens, %zu generated; prefill %.1f ms; "
        "decode %.1f tokens/s\n",
        ir::load_model_config(model_path).name.c_str(), static_cast<long long>(g.prompt_tokens), g.tokens.size(),
        g.prefill_seconds * 1e3, decode_steps > 0 ? decode_steps / g.decode_seconds : 0.0);
    return 0;
  }
  report_run(*result.report, out);
  if (!result.host_note.empty())
    std::printf("  host: %s; simulated with values in %.2f s wall, %.3f s per decoded token\n",
                result.host_note.c_str(), result.values_wall_s,
                g.tokens.size() > 1 ? g.decode_seconds / static_cast<double>(g.tokens.size() - 1) : 0.0);
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
    const ir::Graph graph = ir::build_model_graph(c);
    const int64_t params = graph.parameter_count(), active = graph.active_parameter_count();
    const std::string experts = c.n_experts > 0 ? fmt::format("; {} experts, {} per token: {} active", c.n_experts,
                                                              c.experts_per_token, with_thousands(active))
                                                : "";
    std::printf("%-14s %-6s %7lld %7lld %6lld %5lld %8lld %16s  %s%s\n", entry.name.c_str(), ir::family_name(c.family),
                static_cast<long long>(c.n_layers), static_cast<long long>(c.d_model),
                static_cast<long long>(c.n_heads), static_cast<long long>(c.n_kv_heads),
                static_cast<long long>(c.context_length), with_thousands(params).c_str(),
                entry.ships_weights ? "shipped" : "shapes only (--weights FILE|random)", experts.c_str());
  }
  return 0;
}

int archs_command() {
  std::printf("%-11s %-13s %11s %9s %9s %7s %12s  %s\n", "name", "fabric", "grid", "cores", "SRAM/core", "clock",
              "fp16 TMAC/s", "description");
  std::printf("%-11s %-13s %11s %9s %9s %7s %12s  %s\n", "host", "-", "-", "-", "-", "-", "-",
              "built-in reference executor: fp32 on this CPU (OpenBLAS), the numerical oracle");
  for (const auto& file : preset_files()) {
    const arch::ArchSpec a = target::load_arch(file);
    std::printf("%-11s %-13s %11s %9s %6.0fKiB %5.2fGHz %12.1f  %s\n", a.name.c_str(), a.fabric.c_str(),
                fmt::format("{}x{}", a.usable.width, a.usable.height).c_str(), with_thousands(a.usable.cores()).c_str(),
                a.core.sram_bytes / 1024, a.clock_hz / 1e9, a.peak_macs_per_second("fp16") / 1e12,
                a.description.c_str());
  }
  return 0;
}

int archs_area_command() {
  std::printf("%-11s %-7s %9s %10s %10s %10s %8s %10s %10s %7s %8s\n", "name", "process", "units", "logic mm2",
              "SRAM mm2", "shared mm2", "fixed", "model mm2", "published", "error", "static W");
  for (const auto& file : preset_files()) {
    const arch::ArchSpec a = target::load_arch(file);
    if (!a.area.described) {
      std::printf("%-11s no area section (no published die area or core breakdown found)\n", a.name.c_str());
      continue;
    }
    const arch::AreaBreakdown b = arch::area_of(a);
    const double published = a.area.published_mm2;
    std::printf("%-11s %-7s %9s %10.1f %10.1f %10.1f %8.1f %10.1f %10s %7s %8.0f\n", a.name.c_str(),
                a.area.process.c_str(), with_thousands(a.area.units).c_str(), b.logic_mm2, b.core_sram_mm2,
                b.shared_sram_mm2, b.fixed_mm2, b.total_mm2(),
                published > 0 ? fmt::format("{:.0f}", published).c_str() : "-",
                published > 0 ? fmt::format("{:+.1f}%", 100 * (b.total_mm2() / published - 1)).c_str() : "-",
                b.total_mm2() * a.area.leakage_w_per_mm2);
  }
  return 0;
}

// One model on several machines (a preset, or a system COUNTxPRESET), timing-only: a row per
// machine and batch size.
int compare_command(const CompareFlags& flags) {
  std::vector<fs::path> inputs;
  for (const std::string& model : flags.models) inputs.push_back(resolve_model(model));
  if (flags.train) {
    if (flags.models.size() != 1) fail("--train compares one model on several machines; give one -m");
    const std::string& model = flags.models.front();
    check_outputs({flags.json}, inputs);
    target::TrainingWork work = flags.work;
    work.recompute = ir::parse_recompute(flags.recompute);
    const auto rows = api::compare_training(model, flags.archs, work);
    std::printf("one training step of %s, recompute %s (timing-only)\n", model.c_str(), flags.recompute.c_str());
    std::fputs(report::training_compare_table(rows).c_str(), stdout);
    if (!flags.json.empty()) report::write_output(flags.json, report::training_compare_json(rows), inputs);
    return 0;
  }
  if (!flags.precision.file.empty()) inputs.emplace_back(flags.precision.file);
  if (!flags.weights.empty() && flags.weights != "random") inputs.emplace_back(flags.weights);
  check_outputs({flags.json, flags.csv}, inputs);
  PrecisionFlags precision = flags.precision;
  if (precision.dtype.empty() && precision.file.empty()) precision.dtype = "fp16";
  api::CompareRequest request{.machines = flags.archs,
                              .prompt_tokens = flags.prompt_tokens,
                              .max_new_tokens = flags.max_tokens,
                              .batches = flags.batches,
                              .sweep = flags.sweep,
                              .tensor_parallel = flags.tensor_parallel,
                              .expert_parallel = flags.expert_parallel,
                              .precision = precision.resolve(),
                              .routing = compiler::parse_routing(flags.routing),
                              .numerics = flags.numerics,
                              .weights = flags.weights,
                              .seed = flags.seed};
  std::vector<report::CompareRow> rows;
  std::string names;
  for (const std::string& model : flags.models) {
    request.model = model;
    const std::vector<report::CompareRow> of_model = api::compare(request);
    rows.insert(rows.end(), of_model.begin(), of_model.end());
    names += (names.empty() ? "" : " and ") + model;
  }
  const bool one_pass = std::all_of(rows.begin(), rows.end(), [](const report::CompareRow& r) { return r.one_pass; });
  if (one_pass)
    std::printf(
        "%s, an encoder: one pass over %lld tokens per request (TTFT is the pass; served tok/s the tokens it "
        "processes), %s (timing-only)\n",
        names.c_str(), static_cast<long long>(flags.prompt_tokens), request.precision.describe().c_str());
  else
    std::printf("%s, %lld prompt + %lld generated tokens per request, %s (%s)\n", names.c_str(),
                static_cast<long long>(flags.prompt_tokens), static_cast<long long>(flags.max_tokens),
                request.precision.describe().c_str(),
                flags.numerics ? "greedy tokens checked against the host reference" : "timing-only");
  std::fputs(report::compare_table(rows).c_str(), stdout);
  if (flags.sweep) std::fputs(report::batch_sweep_summary(rows).c_str(), stdout);
  if (!flags.json.empty()) report::write_output(flags.json, report::compare_json(rows), inputs);
  if (!flags.csv.empty()) report::write_output(flags.csv, report::compare_csv(rows), inputs);
  return 0;
}

int sweep_command(const SweepFlags& flags) {
  const fs::path spec_file = flags.spec;
  auto report_outcome = [](const api::SweepOutcome& o) {
    std::fputs(o.summary.c_str(), stdout);
    std::printf(
        "%lld points (%lld from an earlier run) in %s: results.jsonl, results.csv, summary.txt, pareto.svg/png, "
        "parallel.svg, report.html\n",
        static_cast<long long>(o.points), static_cast<long long>(o.resumed), o.dir.string().c_str());
  };
  if (sweep::launched_by_mpi()) {
#ifdef TESSERA_HAVE_MPI
    const bool ok = sweep::run_over_mpi(
        [&] { return api::load_sweep(spec_file); },
        [&](const sweep::Spec& s) { return api::sweep_directory(s, spec_file, flags.out); },
        [&](const sweep::Spec& s, const fs::path& dir) { report_outcome(api::write_sweep_outputs(s, dir)); });
    return ok ? 0 : 1;
#else
    fail("this tessera was built without MPI (-DTESSERA_BUILD_MPI=OFF); run `tessera sweep` without mpirun");
#endif
  }
  const sweep::Spec spec = api::load_sweep(spec_file);
  const fs::path dir = api::sweep_directory(spec, spec_file, flags.out);
  Progress progress("sweeping", flags.quiet);
  const api::SweepOutcome outcome =
      api::run_sweep(spec, dir, flags.threads, [&](int64_t done, int64_t total) { progress.update(done, total); });
  report_outcome(outcome);
  return 0;
}

int validate_command(const ValidateFlags& flags) {
  std::vector<fs::path> files;
  for (const auto& f : flags.files) files.emplace_back(f);
  if (files.empty()) files = api::validation_files();
  check_outputs({flags.json, flags.csv, flags.svg}, files);
  const std::vector<report::ValidationRow> rows = api::validate(files);
  std::fputs(report::validation_table(rows).c_str(), stdout);
  if (!flags.json.empty()) report::write_output(flags.json, report::validation_json(rows), files);
  if (!flags.csv.empty()) report::write_output(flags.csv, report::validation_csv(rows), files);
  if (!flags.svg.empty()) report::write_output(flags.svg, report::validation_svg(rows), files);
  return 0;
}

int gemm_command(GemmFlags flags) {
  check_outputs({flags.json}, {});
  flags.work.values = !flags.no_numerics;
  flags.work.fidelity = flags.fidelity == "cycle" ? target::Fidelity::Cycle : target::Fidelity::Flow;
  const std::vector<report::GemmRun> runs = api::gemm(flags.archs, flags.work);
  std::fputs(report::gemm_table(flags.work, runs).c_str(), stdout);
  if (!flags.json.empty()) report::write_output(flags.json, report::gemm_json(flags.work, runs), {});
  return 0;
}

// `tessera simulate PLAN`: any plan `compile --arch` writes, told apart by its format field.
int simulate_command(const std::string& plan_path, const Outputs& given) {
  Outputs outputs = given;
  outputs.inputs = {plan_path};
  check_outputs(outputs);
  const target::LoadedPlan loaded = target::load_plan(read_text_file(plan_path, kPlanFile), plan_path);
  report::check_heatmaps(run_files(outputs), loaded.target->capabilities().core_heatmaps, loaded.target->arch().name);
  Progress progress("simulating", outputs.quiet);
  report_run(loaded.target->simulate(*loaded.plan, simulate_options(outputs, progress)), outputs);
  return 0;
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
                                       .expert_parallel = flags.expert_parallel,
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
  // A sweep's directory or results file: its page, rebuilt from the sweep file the results keep.
  if (fs::is_directory(run_json) || run_json.ends_with(".jsonl")) {
    report::write_output(output, api::sweep_page(run_json), {run_json});
    std::printf("wrote %s\n", output.c_str());
    return 0;
  }
  report::write_output(output, report::html_report(read_text_file(run_json, kRunFile), run_json), {run_json});
  std::printf("wrote %s\n", output.c_str());
  return 0;
}

}  // namespace tessera::cli
