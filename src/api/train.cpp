#include "tessera/api/train.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>
#include <optional>

#include "tessera/api/catalog.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/model/safetensors.hpp"
#include "tessera/ref/trainer.hpp"
#include "tessera/report/output_files.hpp"
#include "tessera/report/training_report.hpp"
#include "tessera/system/system.hpp"

namespace tessera::api {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCheckpointWeights = "model.safetensors";
constexpr const char* kCheckpointOptimizer = "optimizer.safetensors";
constexpr const char* kCurveCsv = "loss.csv";
constexpr const char* kCurveSvg = "loss.svg";

using model::splitmix64_mix;

uint64_t fingerprint(const std::vector<int32_t>& tokens) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t t : tokens) h = splitmix64_mix(h ^ static_cast<uint32_t>(t));
  return h;
}

void validate(const TrainRequest& r, const ir::ModelConfig& config) {
  auto positive = [](const char* flag, int64_t value) {
    if (value < 1) fail("{} must be >= 1, got {}", flag, value);
  };
  positive("--steps", r.steps), positive("--batch", r.batch), positive("--seq", r.seq);
  positive("--micro-batches", r.micro_batches), positive("--eval-windows", r.eval_windows);
  if (r.seq > config.context_length)
    fail("--seq {} exceeds {}'s context of {} tokens (its position table has no rows beyond)", r.seq, config.name,
         config.context_length);
  if (!(r.lr > 0) || !std::isfinite(r.lr)) fail("--lr must be a positive number, got {}", r.lr);
  if (r.min_lr_ratio < 0 || r.min_lr_ratio > 1) fail("--min-lr-ratio must be in [0, 1], got {}", r.min_lr_ratio);
  if (r.warmup < 0 || r.eval_every < 0 || r.checkpoint_every < 0 || r.stop_after < 0)
    fail("--warmup, --eval-every, --checkpoint-every and --stop-after must be >= 0");
  if (r.stop_after > 0 && r.out_dir.empty()) fail("--stop-after needs --out: the checkpoint to resume from");
  if (!(r.held_out_fraction > 0 && r.held_out_fraction < 0.5))
    fail("--held-out must be a fraction in (0, 0.5), got {}", r.held_out_fraction);
  if (r.text_path.empty()) fail("train needs a text file (--text FILE)");
  if (r.precision != "fp32" && r.precision != "bf16" && r.precision != "fp16")
    fail("--precision {}: training runs in fp32, or mixed precision bf16 or fp16", r.precision);
}

// The settings a checkpoint records; a resumed run must match them to continue exactly.
std::map<std::string, std::string> settings(const TrainRequest& r, const std::string& model, uint64_t text) {
  const auto& o = r.options.optimizer;
  return {{"model", model},
          {"text_fingerprint", fmt::format("{:016x}", text)},
          {"steps", std::to_string(r.steps)},
          {"batch", std::to_string(r.batch)},
          {"seq", std::to_string(r.seq)},
          {"micro_batches", std::to_string(r.micro_batches)},
          {"lr", fmt::format("{}", r.lr)},
          {"min_lr_ratio", fmt::format("{}", r.min_lr_ratio)},
          {"warmup", std::to_string(r.warmup)},
          {"seed", std::to_string(r.seed)},
          {"precision", r.precision},
          {"arch", r.arch.empty() ? "host" : r.arch},
          {"optimizer", fmt::format("{} beta1={} beta2={} eps={} momentum={} weight_decay={} clip={}",
                                    o.kind == ir::OptimizerKind::AdamW ? "adamw" : "sgd", o.beta1, o.beta2, o.eps,
                                    o.momentum, o.weight_decay, o.clip_norm)}};
}

struct Windows {
  std::vector<int32_t> inputs, targets;
  int64_t sequences = 0;
};

// An encoder trains on masked-LM (BERT's recipe, Devlin et al. 2019): 15% of a window's positions
// are chosen, of which 80% become [MASK], 10% a random token and 10% stay; the loss counts the
// chosen positions only, each predicting the token it stood for. Windows are raw text (no [CLS] or
// [SEP]; one segment).
struct MaskedLm {
  int32_t mask = 0, vocab = 0;
};

// The window inputs[from..] (its tokens, in place) masked as above by positions hashed from `key`
// (at least one chosen), its targets appended to `targets`.
void mask_window(std::vector<int32_t>& inputs, size_t from, std::vector<int32_t>& targets, uint64_t key,
                 const MaskedLm& m) {
  const size_t first_target = targets.size();
  for (size_t t = from; t < inputs.size(); ++t) {
    const uint64_t h = splitmix64_mix(key ^ (static_cast<uint64_t>(t - from) * 0x9e3779b97f4a7c15ull));
    if (h % 1000 >= 150) {
      targets.push_back(ir::kIgnoredTarget);
      continue;
    }
    targets.push_back(inputs[t]);
    const uint64_t kind = (h >> 20) % 10;
    if (kind < 8) inputs[t] = m.mask;
    if (kind == 8) inputs[t] = static_cast<int32_t>((h >> 32) % static_cast<uint64_t>(m.vocab));
  }
  if (std::all_of(targets.begin() + static_cast<ptrdiff_t>(first_target), targets.end(),
                  [](int32_t t) { return t == ir::kIgnoredTarget; })) {
    const size_t t = from + key % (inputs.size() - from);
    targets[first_target + (t - from)] = inputs[t], inputs[t] = m.mask;
  }
}

// Step `step`'s micro-batch `micro`: `batch` windows at positions hashed from (seed, step, micro,
// sequence), so a resumed run draws exactly what the uninterrupted one would have; an encoder's
// masked from the same hash.
Windows training_batch(const TrainRequest& r, const std::vector<int32_t>& tokens, int64_t step, int64_t micro,
                       const std::optional<MaskedLm>& mlm) {
  Windows w;
  w.sequences = r.batch;
  const auto starts = static_cast<uint64_t>(static_cast<int64_t>(tokens.size()) - r.seq);
  for (int64_t s = 0; s < r.batch; ++s) {
    const uint64_t key =
        splitmix64_mix(splitmix64_mix(splitmix64_mix(r.seed ^ 0x7e55e7a) ^ static_cast<uint64_t>(step)) ^
                       static_cast<uint64_t>(micro * 1000003 + s));
    const auto begin = static_cast<size_t>(key % starts);
    const size_t from = w.inputs.size();
    w.inputs.insert(w.inputs.end(), tokens.begin() + begin, tokens.begin() + begin + r.seq);
    if (mlm)
      mask_window(w.inputs, from, w.targets, splitmix64_mix(key), *mlm);
    else
      w.targets.insert(w.targets.end(), tokens.begin() + begin + 1, tokens.begin() + begin + r.seq + 1);
  }
  return w;
}

// Mean loss over the first `eval_windows` consecutive windows of the held-out tokens.
double held_out_loss(ref::Trainer& trainer, const TrainRequest& r, const std::vector<int32_t>& held,
                     const std::optional<MaskedLm>& mlm) {
  const int64_t available = (static_cast<int64_t>(held.size()) - 1) / r.seq;
  const int64_t windows = std::min(r.eval_windows, available);
  double total = 0;
  for (int64_t first = 0; first < windows; first += r.batch) {
    const int64_t count = std::min(r.batch, windows - first);
    Windows w;
    w.sequences = count;
    for (int64_t s = first; s < first + count; ++s) {
      const auto begin = static_cast<size_t>(s * r.seq);
      const size_t from = w.inputs.size();
      w.inputs.insert(w.inputs.end(), held.begin() + begin, held.begin() + begin + r.seq);
      if (mlm)  // the same masks every evaluation
        mask_window(w.inputs, from, w.targets, splitmix64_mix(0x4e1d0u ^ static_cast<uint64_t>(s)), *mlm);
      else
        w.targets.insert(w.targets.end(), held.begin() + begin + 1, held.begin() + begin + r.seq + 1);
    }
    total += trainer.loss({w.inputs, w.targets, count}) * static_cast<double>(count);
  }
  return total / static_cast<double>(windows);
}

model::Weights read_all_tensors(const fs::path& path, std::map<std::string, std::string>* metadata) {
  check_input_file(path, kWeightsFile);
  const model::SafetensorsFile file(path);
  model::Weights out;
  for (const auto& entry : file.index().entries) {
    model::Tensor t{entry.shape, {}};
    int64_t n = 1;
    for (int64_t d : entry.shape) n *= d;
    t.values.resize(static_cast<size_t>(n));
    file.read_f32(entry, t.values);
    out.insert(entry.name, std::move(t));
  }
  if (metadata) *metadata = file.index().metadata;
  return out;
}

std::vector<report::LossPoint> as_points(const std::vector<TrainStep>& history) {
  std::vector<report::LossPoint> points;
  for (const auto& s : history)
    points.push_back({s.step, s.lr, s.loss, s.gradient_norm, s.held_out, s.tokens_per_s, s.elapsed_s});
  return points;
}

}  // namespace

double learning_rate(const TrainRequest& r, int64_t step) {
  if (step <= r.warmup) return r.lr * static_cast<double>(step) / static_cast<double>(r.warmup);
  const double progress =
      r.steps > r.warmup ? static_cast<double>(step - r.warmup) / static_cast<double>(r.steps - r.warmup) : 1.0;
  const double cosine = 0.5 * (1 + std::cos(std::numbers::pi * std::min(1.0, progress)));
  return r.lr * (r.min_lr_ratio + (1 - r.min_lr_ratio) * cosine);
}

TrainResult train(const TrainRequest& r, const std::function<void(const TrainStep&, int64_t)>& on_step) {
  const fs::path model_path = resolve_model(r.model);
  const target::ModelSource source = load_model_source(model_path);
  const ir::ModelConfig& config = source.config;
  validate(r, config);
  // On a chip: its layout and order of arithmetic, or why the step does not fit it (before any work).
  ref::Partitioning partitioning;
  std::string chip_layout;
  if (!r.arch.empty()) {
    if (system::parse_machine_name(r.arch).first != 1)
      fail("--arch {}: training with values runs on one chip; add --no-numerics to time a step on a system", r.arch);
    const target::TrainingValues values = load_target(r.arch, PrecisionPolicy{})
                                              ->training_values(source, {.chips = 1,
                                                                         .global_batch = r.batch,
                                                                         .seq = r.seq,
                                                                         .micro_batch = r.batch,
                                                                         .recompute = r.options.recompute});
    if (!values.status) fail("{}", values.status.message());
    partitioning = values.partitioning;
    chip_layout = values.layout;
  }
  const ir::Graph graph = ir::build_model_graph(config);
  const model::Tokenizer tokenizer = load_tokenizer(config, r.tokenizer_dir);
  const std::vector<int32_t> tokens = tokenizer.encode(read_text_file(r.text_path, kTextFile));
  std::optional<MaskedLm> mlm;
  if (config.is_encoder()) {
    if (!tokenizer.special("[MASK]"))
      fail("'{}' is an encoder, trained on masked-LM: its tokenizer needs a [MASK] token (BERT's vocab.txt)",
           config.name);
    mlm = MaskedLm{*tokenizer.special("[MASK]"), static_cast<int32_t>(config.vocab_size)};
  }
  const auto held_count = std::max<size_t>(
      static_cast<size_t>(r.seq + 1), static_cast<size_t>(static_cast<double>(tokens.size()) * r.held_out_fraction));
  if (tokens.size() < held_count + static_cast<size_t>(r.seq + 1))
    fail(
        "{}: {} tokens are too few for a {}-token window to train on and one held out; give more text or a "
        "smaller --seq",
        r.text_path, tokens.size(), r.seq);
  const std::vector<int32_t> train_tokens(tokens.begin(), tokens.end() - static_cast<ptrdiff_t>(held_count));
  const std::vector<int32_t> held(tokens.end() - static_cast<ptrdiff_t>(held_count), tokens.end());
  const auto expected = settings(r, config.name, fingerprint(tokens));

  // Where to start: a checkpoint, the model's weights, a file, or GPT-2's initialisation.
  TrainResult result;
  result.model_name = config.name;
  result.chip_layout = chip_layout;
  result.train_tokens = static_cast<int64_t>(train_tokens.size());
  result.held_out_tokens = static_cast<int64_t>(held.size());
  result.parameters = graph.parameter_count();
  model::Weights start;
  model::Weights optimizer_state;
  std::vector<TrainStep> history;
  std::optional<double> initial_held;
  std::pair<double, int64_t> loss_scale_at_resume{1, 0};
  std::vector<fs::path> inputs = {model_path, r.text_path};
  if (!r.resume.empty()) {
    const fs::path dir(r.resume);
    start = model::load_weights(graph, dir / kCheckpointWeights);
    std::map<std::string, std::string> meta;
    optimizer_state = read_all_tensors(dir / kCheckpointOptimizer, &meta);
    if (!meta.contains("arch")) meta["arch"] = "host";  // checkpoints from before chips trained with values
    for (const auto& [key, value] : expected)
      if (!meta.contains(key) || meta.at(key) != value)
        fail(
            "{}: the checkpoint was written with {} = '{}', this run has '{}'; resume with the same model, text "
            "and training flags to continue exactly",
            (dir / kCheckpointOptimizer).string(), key, meta.contains(key) ? meta.at(key) : "(none)", value);
    try {
      result.resumed_from = std::stoll(meta.at("step"));
      initial_held = std::stod(meta.at("initial_held_out"));
      if (r.precision == "fp16")
        loss_scale_at_resume = {std::stod(meta.at("loss_scale")), std::stoll(meta.at("steps_at_scale"))};
    } catch (const std::exception&) {
      fail("{}: metadata 'step', 'initial_held_out' or (fp16) 'loss_scale' is missing or not a number",
           (dir / kCheckpointOptimizer).string());
    }
    for (const auto& p :
         report::parse_loss_curve_csv(read_text_file(dir / kCurveCsv, kTextFile), (dir / kCurveCsv).string()))
      if (p.step <= result.resumed_from)
        history.push_back({p.step, p.lr, p.loss, p.gradient_norm, p.held_out, p.tokens_per_s, p.elapsed_s});
  } else if (r.init == "scratch") {
    start = model::initial_weights(graph, r.seed);
  } else {
    if (r.init != "shipped") inputs.emplace_back(r.init);
    start = load_weights(config, graph, r.init == "shipped" ? "" : r.init, r.seed, PrecisionPolicy{});
  }
  fs::path out_dir;
  if (!r.out_dir.empty()) {
    if (fs::path(r.out_dir) == fs::path(r.resume)) inputs = {model_path, r.text_path};
    out_dir = report::prepare_output_directory(r.out_dir, inputs);
  }

  const ir::TrainingGraph training = ir::build_training_graph(graph, r.options);
  ref::MixedPrecision precision;
  precision.compute = parse_float_format(r.precision);
  precision.loss_scaling = r.precision == "fp16";
  ref::Trainer trainer(training, start, precision, partitioning);
  if (!r.resume.empty()) {
    trainer.load_optimizer_state(optimizer_state, result.resumed_from);
    if (precision.loss_scaling) trainer.set_loss_scale(loss_scale_at_resume.first, loss_scale_at_resume.second);
  }
  result.initial_held_out = initial_held ? *initial_held : held_out_loss(trainer, r, held, mlm);

  bool package_written = false;  // config and tokenizer: the same at every checkpoint
  auto checkpoint = [&](int64_t step) {
    if (out_dir.empty()) return;
    std::vector<model::NamedTensor> tensors;
    const model::Weights weights = trainer.weights(), state = trainer.optimizer_state();
    for (const auto& name : training.parameters)
      tensors.push_back({name, weights.at(name).shape, weights.at(name).values});
    report::write_into_output_directory(out_dir, kCheckpointWeights,
                                        model::encode_safetensors_f32(tensors, {{"format", "pt"}}));
    std::vector<model::NamedTensor> state_tensors;
    for (const auto& name : training.parameters)
      for (const char* suffix : {".m", ".v", ".momentum"})
        if (const model::Tensor* t = state.find(name + suffix))
          state_tensors.push_back({name + suffix, t->shape, t->values});
    auto meta = expected;
    meta["step"] = std::to_string(step);
    meta["initial_held_out"] = fmt::format("{:.17g}", result.initial_held_out);
    meta["loss_scale"] = fmt::format("{:.17g}", trainer.loss_scale());
    meta["steps_at_scale"] = std::to_string(trainer.steps_at_scale());
    report::write_into_output_directory(out_dir, kCheckpointOptimizer,
                                        model::encode_safetensors_f32(state_tensors, meta));
    const auto points = as_points(history);
    report::write_into_output_directory(out_dir, kCurveCsv, report::loss_curve_csv(points));
    report::write_into_output_directory(
        out_dir, kCurveSvg,
        report::loss_curve_svg(points, fmt::format("{}: {} steps of {} x {} tokens", config.name, r.steps,
                                                   r.batch * r.micro_batches, r.seq)));
    if (package_written) return;
    package_written = true;
    // The tokenizer the run read, copied beside the weights under its usual names.
    const TokenizerFiles files = tokenizer_files(config, r.tokenizer_dir);
    const auto copy = [&](const fs::path& from, const char* name) {
      report::write_into_output_directory(out_dir, name, read_text_file(from, kTokenizerFile));
      return std::string(name);
    };
    std::string tokenizer_names[2];
    switch (files.kind) {
      case TokenizerFiles::Kind::Json:
        tokenizer_names[0] = copy(files.file, "tokenizer.json");
        break;
      case TokenizerFiles::Kind::WordPiece:
        tokenizer_names[0] = copy(files.file, "vocab.txt");
        break;
      case TokenizerFiles::Kind::Bpe:
        tokenizer_names[0] = copy(files.file, "encoder.json"), tokenizer_names[1] = copy(files.merges, "vocab.bpe");
        break;
    }
    report::write_into_output_directory(
        out_dir, "config.yaml",
        "# Written by tessera train: the model config and this checkpoint's files\n" +
            ir::model_config_yaml(config, kCheckpointWeights, tokenizer_names[0], tokenizer_names[1]));
  };

  using clock = std::chrono::steady_clock;
  const auto began = clock::now();
  const double elapsed_before = history.empty() ? 0.0 : history.back().elapsed_s;
  int64_t tokens_done = 0;
  double step_seconds = 0;  // optimizer steps only, not held-out evaluation or checkpoints
  const int64_t last_step = r.stop_after > 0 ? std::min(r.stop_after, r.steps) : r.steps;
  for (int64_t step = result.resumed_from + 1; step <= last_step; ++step) {
    const auto step_began = clock::now();
    std::vector<Windows> micro;
    std::vector<ref::Batch> views;
    for (int64_t m = 0; m < r.micro_batches; ++m) micro.push_back(training_batch(r, train_tokens, step, m, mlm));
    for (const auto& w : micro) views.push_back({w.inputs, w.targets, w.sequences});
    TrainStep s;
    s.step = step;
    s.lr = learning_rate(r, step);
    const ref::StepResult done = trainer.step(views, s.lr);
    if (!std::isfinite(done.loss))
      fail("step {}: the loss is {}; training diverged (lower --lr, or raise --warmup)", step, done.loss);
    s.loss = done.loss, s.gradient_norm = done.gradient_norm;
    s.skipped = done.skipped, s.loss_scale = done.loss_scale;
    const double seconds = std::chrono::duration<double>(clock::now() - step_began).count();
    step_seconds += seconds;
    const int64_t step_tokens = r.batch * r.seq * r.micro_batches;
    tokens_done += step_tokens;
    s.tokens_per_s = static_cast<double>(step_tokens) / std::max(seconds, 1e-9);
    if ((r.eval_every > 0 && step % r.eval_every == 0) || step == r.steps)
      s.held_out = held_out_loss(trainer, r, held, mlm);
    s.elapsed_s = elapsed_before + std::chrono::duration<double>(clock::now() - began).count();
    history.push_back(s);
    if (on_step) on_step(s, r.steps);
    if ((r.checkpoint_every > 0 && step % r.checkpoint_every == 0) || step == last_step) checkpoint(step);
  }
  result.tokens_per_s = step_seconds > 0 ? static_cast<double>(tokens_done) / step_seconds : 0;
  result.final_held_out =
      history.empty() || !history.back().held_out ? held_out_loss(trainer, r, held, mlm) : *history.back().held_out;
  result.history = std::move(history);
  return result;
}

target::TrainingOutcome train_on_machine(const std::string& model, const std::string& machine,
                                         target::TrainingWork work) {
  const auto [chips, preset] = system::parse_machine_name(machine);
  work.chips = chips;
  const auto chip = load_target(preset, PrecisionPolicy{});
  const target::ModelSource source = load_model_source(resolve_model(model));
  if (work.seq == 0) work.seq = std::min<int64_t>(2048, source.config.context_length);
  return chip->simulate_training(source, work);
}

std::vector<report::TrainingCompareRow> compare_training(const std::string& model,
                                                         const std::vector<std::string>& machines,
                                                         const target::TrainingWork& work) {
  std::vector<report::TrainingCompareRow> rows;
  for (const std::string& machine : machines) {
    report::TrainingCompareRow row{machine, {}, {}};
    resolve_arch(system::parse_machine_name(machine).second);  // an unknown machine is an error, not a row
    try {
      const target::TrainingOutcome outcome = train_on_machine(model, machine, work);
      if (outcome.status)
        row.report = outcome.report;
      else
        row.failure = outcome.status.message();
    } catch (const Error& e) {
      row.failure = e.what();
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace tessera::api
