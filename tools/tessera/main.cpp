// tessera: the command-line front end. It parses flags and calls the libraries; nothing else.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>

#include "commands.hpp"
#include "tessera/base/error.hpp"

using namespace tessera;
using namespace tessera::cli;

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
  cmd->add_option("--fidelity", out.fidelity,
                  "Mesh fabrics: analytic (closed forms, for sweeps), flow (routed flows with contention) or cycle "
                  "(every wavelet; meshes up to 64x64: on larger ones, one stage with --cycle-region)")
      ->check(CLI::IsMember({"analytic", "flow", "cycle"}))
      ->capture_default_str();
  cmd->add_option("--cycle-region", out.cycle_region,
                  "Mesh fabrics: time this stage's collectives (\"layer 3\") wavelet by wavelet inside the run, and "
                  "report their error at the run's tier");
}

// Fails naming the first of `options` the user gave to `cmd`, with why it does not apply.
void reject_given(const CLI::App* cmd, std::initializer_list<const char*> options, const char* why) {
  for (const char* name : options)
    if (const CLI::Option* option = cmd->get_option_no_throw(name); option && option->count() > 0)
      fail("{} {}: {} {}", cmd->get_name(), name, name, why);
}

// OpenBLAS's idle threads spin (with sched_yield) and libgomp's busy-wait for a long while after
// each call by default; on a 2-core host the two pools then fight for the cores between GEMMs and
// attention (perf of `tessera train`: 23% kernel time, 10% sched_yield). Both libraries read their
// settings once, when loaded, so the first start sets them and re-executes itself; a user's own
// settings are kept. Measured on the default model's training step: 1,943-2,164 -> 2,457 tokens/s.
void settle_thread_pools(char** argv) {
  if (std::getenv("TESSERA_THREADS_SETTLED")) return;
  setenv("TESSERA_THREADS_SETTLED", "1", 1);
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);  // 2^4 cycles of spinning before an idle thread sleeps
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  execv("/proc/self/exe", argv);  // on failure, run on as we are
}

int main(int argc, char** argv) {
  settle_thread_pools(argv);
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
  run_cmd->add_option("--logits", run.logits,
                      "Write the logits of every generated position (NumPy .npy, float32 [generated, vocabulary]; an "
                      "encoder: of every [MASK], [masks, vocabulary])");
  run_cmd
      ->add_option("-a,--arch", run.arch, "Machine: host (reference executor) or a preset/file (see `tessera archs`)")
      ->capture_default_str();
  run_cmd->add_flag("--no-numerics", run.no_numerics, "Timing and energy only, no tensor values");
  run_cmd->add_option("--batch", run.batch, "GPUs: requests decoded together")->capture_default_str();
  run_cmd->add_option("--tp", run.tensor_parallel, "GPUs: tensor-parallel group size")->capture_default_str();
  run_cmd
      ->add_option("--ep", run.expert_parallel,
                   "GPUs, mixtures of experts: experts over a group of this many, each GPU serving --batch requests "
                   "with attention data-parallel, tokens sent to their experts by all-to-all")
      ->capture_default_str();
  run_cmd
      ->add_option("--routing", run.routing,
                   "Mixtures of experts, timing: uniform (each token's experts at random) or balanced (every expert "
                   "the same share; the difference is what imbalance costs)")
      ->capture_default_str();
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
  compile_cmd
      ->add_option("--ep", compile.expert_parallel,
                   "GPUs, mixtures of experts: expert-parallel group size (--batch requests per GPU)")
      ->capture_default_str();
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
  simulate_cmd->add_flag("--cycle-level", simulate_outputs.cycle_level,
                         "Time every collective wavelet by wavelet (meshes up to 64x64; slow): --fidelity cycle");

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

  TrainFlags train;
  api::TrainRequest& tr = train.request;
  auto* train_cmd = app.add_subcommand(
      "train", "Train a model on a text file with the reference trainer (checked against PyTorch), with checkpoints");
  train_cmd->add_option("-m,--model", tr.model, "Model name, config file or model directory")->capture_default_str();
  train_cmd->add_option("--text", tr.text_path, "Training text (UTF-8); its end is held out for evaluation");
  train_cmd
      ->add_option("--init", tr.init,
                   "Start from: scratch (GPT-2 initialisation), shipped (the model's weights) or a safetensors "
                   "file")
      ->capture_default_str();
  train_cmd->add_option("--tokenizer", tr.tokenizer_dir, "Directory with encoder.json and vocab.bpe (GPT-2 format)");
  train_cmd->add_option("--steps", tr.steps, "Optimizer steps")->capture_default_str();
  train_cmd->add_option("--batch", tr.batch, "Sequences per micro-batch")->capture_default_str();
  train_cmd
      ->add_option("--seq", tr.seq,
                   "Tokens per sequence (with --arch: default 2,048 or the model's context if shorter)")
      ->capture_default_str();
  train_cmd->add_option("--micro-batches", tr.micro_batches, "Micro-batches per step (gradient accumulation)")
      ->capture_default_str();
  train_cmd->add_option("--lr", tr.lr, "Peak learning rate")->capture_default_str();
  train_cmd->add_option("--warmup", tr.warmup, "Steps of linear warmup before the cosine decay")->capture_default_str();
  train_cmd->add_option("--min-lr-ratio", tr.min_lr_ratio, "Final learning rate as a fraction of --lr")
      ->capture_default_str();
  train_cmd->add_option("--optimizer", train.optimizer, "adamw (betas 0.9/0.95) or sgd (momentum 0.9)")
      ->capture_default_str();
  train_cmd->add_option("--weight-decay", tr.options.optimizer.weight_decay, "Weight decay of matrices")
      ->capture_default_str()
      ->check(kNonNegative);
  train_cmd->add_option("--clip", tr.options.optimizer.clip_norm, "Clip gradients to this global L2 norm; 0: off")
      ->capture_default_str()
      ->check(kNonNegative);
  train_cmd
      ->add_option("--recompute", train.recompute,
                   "Activation recomputation: none, selective or full (with --arch: default selective)")
      ->capture_default_str();
  train_cmd
      ->add_option("--precision", tr.precision,
                   "fp32, or mixed precision bf16 or fp16 (matrix products in the format, fp32 master weights; fp16 "
                   "with dynamic loss scaling)")
      ->capture_default_str();
  train_cmd->add_option("-s,--seed", tr.seed, "Seed for the initialisation and the batches")->capture_default_str();
  train_cmd->add_option("--held-out", tr.held_out_fraction, "Fraction of the text held out")->capture_default_str();
  train_cmd->add_option("--eval-every", tr.eval_every, "Held-out loss every this many steps; 0: at the end only")
      ->capture_default_str();
  train_cmd->add_option("--eval-windows", tr.eval_windows, "Held-out windows scored each time")->capture_default_str();
  train_cmd->add_option("-o,--out", tr.out_dir,
                        "Checkpoint directory (a model package: `tessera run -m DIR`), with loss.csv and loss.svg");
  train_cmd->add_option("--checkpoint-every", tr.checkpoint_every, "Also checkpoint every this many steps")
      ->capture_default_str();
  train_cmd->add_option("--resume", tr.resume, "Continue exactly from a checkpoint directory (same flags)");
  train_cmd->add_option("--stop-after", tr.stop_after, "End after this step with a checkpoint (resume later)");
  train_cmd->add_flag("-q,--quiet", train.quiet, "No progress lines on stderr");
  train_cmd
      ->add_option("-a,--arch", train.arch,
                   "host (the reference trainer); a chip preset to train with values in its arithmetic order "
                   "(wse2, gc200: small models); with --no-numerics, a machine to time one step on: a preset or "
                   "COUNTxPRESET (1024xh100, 16xwse2)")
      ->capture_default_str();
  train_cmd->add_flag("--no-numerics", train.no_numerics, "With --arch: time one step, no values (no --text needed)");
  train_cmd->add_option("--global-batch", train.work.global_batch,
                        "With --arch: sequences per step (default 1,024, rounded to the data-parallel ways)");
  train_cmd->add_option(
      "--micro-batch", train.work.micro_batch,
      "With --arch (GPUs, IPUs): sequences per pipeline micro-batch (default: the fastest that fits)");
  train_cmd->add_option("--tp", train.work.tensor_parallel, "With --arch (GPUs): tensor-parallel size (default: best)");
  train_cmd->add_option("--pp", train.work.pipeline_parallel,
                        "With --arch (GPUs, IPUs): pipeline stages (default: best)");
  train_cmd
      ->add_option("--interleave", train.work.interleave,
                   "With --arch (GPUs): chunks of layers per pipeline stage (interleaved 1F1B)")
      ->capture_default_str();
  train_cmd->add_option("--json", train.json, "With --arch: write the step's figures and timeline as JSON");
  train_cmd->add_option("--trace", train.trace, "With --arch: write the step's timeline (Chrome/Perfetto trace JSON)");
  train_cmd->add_option("--zero", train.work.zero_stage, "With --arch (GPUs): ZeRO stage 0-3")->capture_default_str();
  train_cmd
      ->add_option("--attention", train.attention,
                   "With --arch (GPUs): fused (FlashAttention: scores stay on chip) or unfused (scores, softmax and "
                   "dropout in HBM, as Megatron-LM ran in 2021-22)")
      ->capture_default_str();
  train_cmd->add_flag("--no-sequence-parallel", train.no_sequence_parallel,
                      "With --arch (GPUs): norms and residual adds whole on every tensor-parallel GPU (Megatron-LM "
                      "before sequence parallelism) instead of split over the group by tokens");

  std::string report_input, report_output;
  auto* report_cmd = app.add_subcommand("report",
                                        "Turn a run's JSON (--json), a validation's (validate --json) or a sweep's "
                                        "directory into one self-contained HTML page");
  report_cmd
      ->add_option(
          "run", report_input,
          "Run metrics (JSON written by run/simulate --json), a validation (validate --json) or a sweep directory")
      ->required();
  report_cmd->add_option("-o,--output", report_output, "HTML file to write")->required();

  SweepFlags sweep;
  auto* sweep_cmd = app.add_subcommand(
      "sweep",
      "Explore chip designs: a sweep file's parameters x workloads, with area, power and a Pareto front "
      "(resumable; under mpirun, distributed)");
  sweep_cmd->add_option("file", sweep.spec, "Sweep file (docs/sweep.md; e.g. configs/sweeps/wafer-real-estate.yaml)")
      ->required();
  sweep_cmd->add_option("-o,--out", sweep.out, "Output directory (default: sweep-NAME); a rerun resumes it");
  sweep_cmd->add_option("-j,--threads", sweep.threads, "Points evaluated at once (default: every core)");
  sweep_cmd->add_flag("-q,--quiet", sweep.quiet, "No progress line");

  ValidateFlags validate;
  auto* validate_cmd = app.add_subcommand(
      "validate", "Predict published measurements (configs/validation/*.yaml) and show the error of each");
  validate_cmd->add_option("files", validate.files, "Validation files (default: the shipped ones)");
  validate_cmd->add_option("--json", validate.json, "Write the rows and the summary as JSON");
  validate_cmd->add_option("--csv", validate.csv, "Write the rows as CSV");
  validate_cmd->add_option("--svg", validate.svg, "Plot predicted against published (log-log, 1.5x and 2x bands)");

  GemmFlags gemm;
  auto* gemm_cmd = app.add_subcommand("gemm",
                                      "One matrix product C = A B timed alone: SUMMA, Cannon, MeshGEMM and MeshGEMV on "
                                      "a mesh, tiles on a GPU or an IPU");
  gemm_cmd->add_option("-M", gemm.work.m, "Rows of A and C")->required();
  gemm_cmd->add_option("-K", gemm.work.k, "Columns of A, rows of B")->required();
  gemm_cmd->add_option("-N", gemm.work.n, "Columns of B and C")->required();
  gemm_cmd->add_option("--arch", gemm.archs, "Machines, comma-separated (presets or arch files)")
      ->delimiter(',')
      ->capture_default_str();
  gemm_cmd->add_option("--dtype", gemm.work.dtype, "Format of A and B (the MAC dtype)")->capture_default_str();
  gemm_cmd->add_option("--algorithm", gemm.work.algorithm,
                       "summa, cannon, meshgemm or meshgemv (default: all, the fastest chosen)");
  gemm_cmd->add_option(
      "--cores", gemm.work.cores,
      "Mesh fabrics: side P of the P x P grid of cores (default: the largest square; GPUs and IPUs use every core)");
  gemm_cmd->add_option("--fidelity", gemm.fidelity, "flow (routed flows with contention) or cycle (every wavelet)")
      ->check(CLI::IsMember({"flow", "cycle"}))
      ->capture_default_str();
  gemm_cmd->add_flag("--no-numerics", gemm.no_numerics, "Time only; do not compute C core by core");
  gemm_cmd->add_option("--seed", gemm.work.seed, "Seed of the operands (uniform in [-1, 1))")->capture_default_str();
  gemm_cmd->add_option("--json", gemm.json, "Write every algorithm's figures as JSON");

  CompareFlags compare;
  auto* compare_cmd = app.add_subcommand("compare",
                                         "One model on several machines and systems side by side (timing; values with "
                                         "--numerics); precision default fp16");
  compare_cmd
      ->add_option("-m,--model", compare.models,
                   "Model name, config file or model directory; several, comma-separated, side by side (a mixture "
                   "of experts against its dense equivalent: -m mixtral-8x7b,mixtral-8x7b-dense)")
      ->delimiter(',')
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
  compare_cmd->add_flag("--sweep", compare.sweep,
                        "Batch 1, 2, 4, ... until the KV caches no longer fit, and say where each machine turns "
                        "from one bound to another");
  compare_cmd->add_option("--batch", compare.batches, "Batch sizes, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  compare_cmd->add_option("--tp", compare.tensor_parallel,
                          "GPU-like chips: tensor-parallel group size (default: the smallest that fits)");
  compare_cmd->add_option("--ep", compare.expert_parallel,
                          "GPU-like chips, mixtures of experts: experts over groups of this many GPUs, attention "
                          "data-parallel, all-to-all between them (default: whichever of that and tensor parallelism "
                          "serves the batch faster; 1: tensor parallelism)");
  compare_cmd
      ->add_option("--routing", compare.routing,
                   "Mixtures of experts: uniform (each token's experts at random) or balanced (every expert the "
                   "same share)")
      ->capture_default_str();
  add_precision_options(compare_cmd, compare.precision);
  compare_cmd->add_flag("--numerics", compare.numerics,
                        "Also generate greedily with values on every single-chip machine and check the tokens "
                        "against the host reference (needs weights: shipped, --weights FILE or --weights random)");
  compare_cmd->add_option("-w,--weights", compare.weights, "With --numerics: safetensors file, or 'random'");
  compare_cmd->add_option("-s,--seed", compare.seed, "With --numerics: seed for the prompt and random weights")
      ->capture_default_str();
  compare_cmd->add_flag("--train", compare.train,
                        "One training step per machine (timing-only; each chooses its layout) instead of inference");
  compare_cmd->add_option("--global-batch", compare.work.global_batch,
                          "With --train: sequences per step (default 1,024, rounded to each layout)");
  compare_cmd->add_option("--seq", compare.work.seq,
                          "With --train: tokens per sequence (default 2,048, or the model's context if shorter)");
  compare_cmd->add_option("--recompute", compare.recompute, "With --train: none, selective or full")
      ->capture_default_str();
  compare_cmd->add_option("--json", compare.json, "Write the rows as JSON");
  compare_cmd->add_option("--csv", compare.csv, "Write the rows as CSV");

  auto* models_cmd = app.add_subcommand("models", "List the models that ship, with shapes and parameter counts");
  auto* archs_cmd = app.add_subcommand("archs", "List the machines that ship");
  bool archs_area = false;
  archs_cmd->add_flag("--area", archs_area,
                      "Each preset's silicon: cores x (logic + SRAM), shared SRAM, fixed blocks, against the published "
                      "die (docs/area.md)");

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
    // A flag that would be silently ignored is an error.
    if (*compile_cmd && compile.arch.empty())
      reject_given(
          compile_cmd,
          {"--output", "--prompt-tokens", "--max-tokens", "--batch", "--tp", "--ep", "--precision", "--dtype",
           "--weights-format", "--activations-format", "--kv-format", "--scales", "--group", "--prune"},
          "writes or shapes a plan and needs --arch (the IR goes to stdout: `tessera compile --emit ir > FILE`)");
    if (*compile_cmd && !compile.arch.empty()) reject_given(compile_cmd, {"--emit"}, "prints the IR, without --arch");
    if (*compare_cmd && !compare.numerics)
      reject_given(compare_cmd, {"--weights", "--seed"}, "is for --numerics (values checked against the reference)");
    if (*compare_cmd && compare.train && compare_cmd->get_option("--seq")->count() == 0)
      compare.work.seq = 0;  // the api's default: 2,048 or the model's context if shorter
    if (*compare_cmd && !compare.train)
      reject_given(compare_cmd, {"--global-batch", "--seq", "--recompute"}, "is for --train");
    if (*compare_cmd && compare.train)
      reject_given(compare_cmd,
                   {"--prompt-len", "--gen", "--batch", "--sweep", "--tp", "--ep", "--numerics", "--csv", "--dtype",
                    "--precision", "--routing"},
                   "is for inference, not --train");
    if (*run_cmd && run.no_numerics)
      reject_given(run_cmd, {"--weights", "--temperature", "--top-k", "--seed"},
                   "chooses values, and --no-numerics computes none");
    if (*run_cmd) return run_command(run);
    if (*train_cmd && train.arch != "host" && !train.no_numerics)
      reject_given(train_cmd,
                   {"--global-batch", "--micro-batch", "--tp", "--pp", "--interleave", "--zero", "--attention",
                    "--no-sequence-parallel"},
                   "lays out a step on a machine (--no-numerics); training with values takes --batch and --seq");
    if (*train_cmd && train.no_numerics) {  // a machine's defaults: Megatron-like sequences and recompute
      if (train_cmd->get_option("--seq")->count() == 0) train.request.seq = 0;  // the api's default
      if (train_cmd->get_option("--recompute")->count() == 0) train.recompute = "selective";
    }
    if (*train_cmd) return train_command(train);
    if (*compile_cmd) return compile_command(compile);
    if (*compare_cmd) return compare_command(compare);
    if (*validate_cmd) return validate_command(validate);
    if (*gemm_cmd) return gemm_command(gemm);
    if (*sweep_cmd) return sweep_command(sweep);
    if (*simulate_cmd) return simulate_command(plan_path, simulate_outputs);
    if (*eval_cmd) return eval_command(eval, eval_text, eval_window);
    if (*report_cmd) return report_command(report_input, report_output);
    if (*models_cmd) return models_command();
    if (*archs_cmd) return archs_area ? archs_area_command() : archs_command();
  } catch (const Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tessera: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "tessera: error: out of host memory\n");
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tessera: error: %s: %s\n", e.path1().c_str(), e.code().message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "tessera: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
