// `train` as a library request: a model trained on a text file by the reference trainer on the
// host, with a warmup-cosine schedule, held-out evaluation, checkpoints that `tessera run` loads
// and exact resumption. It never prints; progress goes to a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tessera/ir/autodiff.hpp"
#include "tessera/report/training_report.hpp"
#include "tessera/target/training.hpp"

namespace tessera::api {

struct TrainRequest {
  std::string model = "default";  // name, config file or model directory
  std::string init = "scratch";   // "scratch" (GPT-2 initialisation), "shipped" (the model's weights) or a
                                  // safetensors file to fine-tune
  std::string tokenizer_dir;      // "" for the model's own
  std::string text_path;          // training text; its last held_out_fraction is held out
  double held_out_fraction = 0.05;
  int64_t steps = 200;
  int64_t batch = 8;          // sequences per micro-batch
  int64_t seq = 128;          // tokens per sequence
  int64_t micro_batches = 1;  // gradient accumulation
  double lr = 1e-3, min_lr_ratio = 0.1;
  int64_t warmup = 20;  // steps of linear warmup, then cosine decay to min_lr_ratio x lr at `steps`
  uint64_t seed = 1;
  ir::TrainingOptions options;
  // fp32, or mixed precision: bf16 or fp16 matrix products with fp32 master weights (fp16 with
  // dynamic loss scaling), as ref::Trainer emulates them.
  std::string precision = "fp32";
  // "": the host reference trainer. An arch preset: one chip of it trains with values, the model
  // laid out as the chip holds it and each matrix product's sums split as its cores or tiles split
  // them (target::Target::training_values); a step that does not fit the chip is an error.
  std::string arch;
  int64_t eval_every = 50;       // held-out loss every this many steps (and at the first and last)
  int64_t eval_windows = 32;     // held-out windows of seq tokens scored each time
  std::string out_dir;           // checkpoint directory ("" = none): a model package `tessera run -m` reads
  int64_t checkpoint_every = 0;  // also write a checkpoint every this many steps (0: at the end only)
  std::string resume;            // a checkpoint directory to continue from
  int64_t stop_after = 0;        // end this process after this step, with a checkpoint (0: at `steps`)
};

struct TrainStep {
  int64_t step = 0;  // 1-based
  double lr = 0, loss = 0, gradient_norm = 0;
  std::optional<double> held_out;  // when evaluated at this step
  double tokens_per_s = 0;         // this step's
  double elapsed_s = 0;            // since this process began training
  bool skipped = false;            // fp16: a gradient overflowed, the weights were left alone
  double loss_scale = 1;           // the scale this step's loss was multiplied by
};

struct TrainResult {
  std::string model_name;
  std::vector<TrainStep> history;  // every step, including those of the run that was resumed
  double initial_held_out = 0;     // before the first step (of the original run)
  double final_held_out = 0;
  double tokens_per_s = 0;  // this process's optimizer steps (held-out evaluation not counted)
  int64_t train_tokens = 0, held_out_tokens = 0, parameters = 0, resumed_from = 0;
  std::string chip_layout;  // with an arch: where the chip holds the model and how it splits the products
};

// The learning rate of step s (1-based) of `steps`: linear warmup over `warmup` steps, then cosine
// decay to min_lr_ratio x lr.
double learning_rate(const TrainRequest& request, int64_t step);

// Throws Error on bad input (text too short for one window, a checkpoint of another model or other
// settings, an output directory that is not tessera's).
TrainResult train(const TrainRequest& request,
                  const std::function<void(const TrainStep&, int64_t steps)>& on_step = {});

// One training step of a model on a machine, timing-only: `machine` is a preset or COUNTxPRESET
// ("1024xh100", "16xwse2"); work.chips is taken from it; work.seq 0 means 2,048 tokens or the
// model's context if shorter. Throws Error on a bad request; a step that
// does not fit comes back as the outcome's FitFailure.
target::TrainingOutcome train_on_machine(const std::string& model, const std::string& machine,
                                         target::TrainingWork work);

// One step of `model` on each machine (timing-only), with the layout each machine chooses; a
// machine where the step does not fit or cannot run gets a row saying why.
std::vector<report::TrainingCompareRow> compare_training(const std::string& model,
                                                         const std::vector<std::string>& machines,
                                                         const target::TrainingWork& work);

}  // namespace tessera::api
