// Training on IPUs (exchange), Graphcore's way: the model is pipelined over the IPUs of a replica,
// each IPU keeping its layers' weights, gradients and optimizer state resident in tile SRAM (no
// off-chip memory in the loop); micro-batches flow through the pipeline with gradient
// accumulation (a 1F1B schedule, bubble (p - 1) / (m + p - 1)); replicas of the pipeline train
// data parallel and all-reduce their gradients over the IPU-Links before the optimizer runs on
// every IPU. Within an IPU each op is spread over the tiles: its activations cross the exchange
// (each op's inputs and outputs once) and every op ends in a BSP sync.
#include <fmt/core.h>

#include <algorithm>
#include <optional>
#include <string>

#include "../training_common.hpp"
#include "exchange_training.hpp"

namespace tessera::target {

namespace {

constexpr MixedPrecisionBytes kBytes = kMixedPrecision;

LayoutEvaluation evaluate(const arch::ArchSpec& arch, const ModelSource& model, const CostedModel& m,
                          const TrainingWork& w, int64_t pp, int64_t global_batch) {
  const auto& cost = m.cost;
  const auto layers = static_cast<int64_t>(cost.layers.size());
  const int64_t dp = w.chips / pp;
  const int64_t m_count = global_batch / (dp * w.micro_batch);
  const auto mb = static_cast<double>(w.micro_batch), m_micro = static_cast<double>(m_count);
  const auto p = static_cast<double>(pp);
  const double peak = 2 * arch.peak_macs_per_second("fp16");
  const auto tiles = static_cast<double>(arch.usable.cores());
  const double exchange_bw = tiles * arch.exchange.bytes_per_cycle * arch.clock_hz;
  const double sync_s = arch.exchange.sync_cycles / arch.clock_hz;

  // The heaviest IPU: the last stage, with ceil(layers / pp) layers, the embeddings, the LM head and
  // the loss (tied weights stay on one IPU).
  const int64_t per_stage = (layers + pp - 1) / pp;
  const compiler::PhaseCost stage_layers = layers_cost(cost, layers - per_stage, layers);
  compiler::PhaseCost stage = stage_layers;
  stage.add(cost.outside);
  const double boundary = cost.layers.empty() ? 0 : cost.layers.back().boundary_elements;

  // One micro-batch through the stage: the MACs at the tiles' peak, each op's activations over the
  // exchange and its sync, and the hand-over to the next IPU over an IPU-Link.
  const double t_forward = mb * stage.forward_flops / peak;
  const double t_backward = mb * (stage.backward_flops + stage.recompute_flops) / peak;
  const double t_exchange = mb * (stage.forward_moved + stage.backward_moved) * kBytes.activation / exchange_bw +
                            static_cast<double>(stage.forward_ops + stage.backward_ops) * sync_s;
  const double handover_bytes = mb * boundary * kBytes.activation;
  const double t_handover =
      pp > 1 ? 2 * (handover_bytes / arch.chip_link.sustained_bytes_per_second() + arch.chip_link.latency_s) : 0;
  const double per_micro = t_forward + t_backward + t_exchange + t_handover;
  const double pipeline = (m_micro + p - 1) * per_micro;
  const double bubble = (p - 1) / (m_micro + p - 1);

  // Replicas all-reduce the stage's gradients (fp16) over the IPU-Links; the optimizer then updates
  // the resident state from tile SRAM.
  const double t_data = ring_allreduce_s(stage.parameters * kBytes.weight, dp,
                                         arch.chip_link.sustained_bytes_per_second(), arch.chip_link.latency_s);
  const double sram_bw = tiles * arch.core.sram_bytes_per_cycle * arch.clock_hz;
  const double t_optimizer = stage.parameters * kBytes.adam_update / sram_bw;
  const double step = pipeline + t_data + t_optimizer;

  TrainingReport r;
  r.arch_name = arch.name, r.model_name = model.config.name, r.mode = "pipelined, weights resident";
  r.layout = fmt::format("{} IPU{} per pipeline x {} replica{}, {} micro-batch{} of {} per replica", pp,
                         pp > 1 ? "s" : "", dp, dp > 1 ? "s" : "", m_count, m_count > 1 ? "es" : "", w.micro_batch);
  r.chips = w.chips, r.global_batch = global_batch, r.seq = w.seq, r.micro_batches = m_count;
  r.recompute = w.recompute;
  r.step_s = step;
  r.tokens_per_s = static_cast<double>(global_batch * w.seq) / step;
  const auto sequences = static_cast<double>(global_batch);
  r.model_flops_per_step = cost.model_flops() * sequences;
  r.hardware_flops_per_step = (cost.model_flops() + cost.total().recompute_flops) * sequences;
  const double machine_peak = peak * static_cast<double>(w.chips);
  r.mfu = r.model_flops_per_step / (machine_peak * step);
  r.hfu = r.hardware_flops_per_step / (machine_peak * step);
  r.bubble_fraction = bubble;
  const double slots = m_micro + p - 1;
  r.communication_share = (slots * (t_exchange + t_handover) + t_data) / step;
  r.breakdown = {{"forward", m_micro * t_forward},
                 {"backward and recompute", m_micro * t_backward},
                 {"exchange between tiles and syncs", m_micro * t_exchange},
                 {"pipeline hand-overs (IPU-Links)", m_micro * t_handover},
                 {"pipeline bubble", pipeline * bubble},
                 {"data-parallel gradients (IPU-Links)", t_data},
                 {"optimizer (tile SRAM)", t_optimizer}};
  r.bound = std::max_element(r.breakdown.begin(), r.breakdown.end(), [](const auto& a, const auto& b) {
              return a.second < b.second;
            })->first;

  r.memory.resource = "SRAM of the IPU";
  r.memory.available = arch.usable_sram_per_core() * tiles;
  r.memory.weights = stage.parameters * kBytes.weight;
  r.memory.gradients = stage.parameters * kBytes.gradient;
  r.memory.optimizer = stage.parameters * kBytes.optimizer;
  // 1F1B: the first stage holds p micro-batches' activations, the last one micro-batch's logits
  // (counted on one IPU: an upper bound on either).
  const double in_flight = std::min(p, m_micro);
  r.memory.activations =
      (in_flight * stage_layers.saved_elements + cost.outside.saved_elements) * mb * kBytes.activation;

  const auto mac_pj = arch.energy.mac_pj.contains("fp16") ? arch.energy.mac_pj.at("fp16") : 0.0;
  const double sram_bytes = m_micro * (3 * stage.parameters * kBytes.weight) + stage.parameters * kBytes.adam_update;
  const double exchange_bytes = m_micro * mb * (stage.forward_moved + stage.backward_moved) * kBytes.activation;
  const double link_bytes = m_micro * handover_bytes * 2 + 2 * stage.parameters * kBytes.weight;
  r.energy_per_step_j = (r.hardware_flops_per_step / 2 * mac_pj +
                         static_cast<double>(w.chips) * (sram_bytes * arch.energy.sram_read_pj_per_byte +
                                                         exchange_bytes * arch.energy.exchange_pj_per_byte +
                                                         link_bytes * arch.energy.offchip_pj_per_byte)) *
                        1e-12;
  r.assumptions = {"matrix products at the tiles' fp16 peak (no efficiency factor: an upper bound on speed)",
                   "each op's activations cross the exchange once, at its full bandwidth, then one BSP sync",
                   "fp16 weights, fp32 gradients and AdamW state all resident in tile SRAM (no Streaming Memory)",
                   "gradients all-reduced in fp16 over the IPU-Links after the pipeline drains"};
  const PipelineSchedule schedule{t_forward + t_exchange / 2 + t_handover / 2,
                                  t_backward + t_exchange / 2 + t_handover / 2,
                                  t_data,
                                  t_optimizer,
                                  pp,
                                  m_count,
                                  1};
  return {r, schedule, r.memory.used() <= r.memory.available};
}

}  // namespace

TrainingOutcome simulate_ipu_training(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& w) {
  if (w.chips < 1) fail("training needs at least one IPU");
  check_micro_batch(w);
  if (w.tensor_parallel > 1 || w.zero_stage > 1 || w.interleave > 1)
    fail(
        "IPUs train pipelined and replicated, each layer spread over one IPU's tiles: --tp, --zero above 1 and "
        "--interleave do not apply");
  if (w.attention != AttentionKernel::Fused)
    fail("--attention unfused is a GPU kernel path (scores in HBM); an IPU keeps attention scores in tile SRAM");
  if (!w.sequence_parallel)
    fail("--no-sequence-parallel is for tensor-parallel GPUs; an IPU holds each layer whole on its tiles");
  const CostedModel m = costed_model(model, w);
  const auto layers = static_cast<int64_t>(m.cost.layers.size());
  LayoutChoice choice;
  for (int64_t pp = 1; pp <= std::min(layers, w.chips); ++pp) {
    if ((w.pipeline_parallel > 0 && pp != w.pipeline_parallel) || w.chips % pp != 0) continue;
    for (const int64_t micro_batch : micro_batch_candidates(w, w.chips / pp)) {
      TrainingWork sized = w;
      sized.micro_batch = micro_batch;
      const int64_t ways = (w.chips / pp) * micro_batch;
      const int64_t batch = w.global_batch > 0 ? w.global_batch : default_global_batch(ways);
      if (batch % ways != 0) continue;
      choice.consider(evaluate(arch, model, m, sized, pp, batch));
    }
  }
  if (choice.best) return choice.chosen();
  if (!choice.least_over)
    fail(
        "no pipeline of {} IPUs for {}: the IPUs per pipeline must divide the IPUs and be at most its {} layers, "
        "and --global-batch split into the replicas x micro-batches of {}",
        w.chips, model.config.name, layers, w.micro_batch > 0 ? std::to_string(w.micro_batch) : "1 or more");
  const TrainingMemory& mem = choice.least_over->report.memory;
  const double gib = 1024.0 * 1024 * 1024;
  return {compiler::FitFailure{
              model.config.name, fmt::format("{} x {}", w.chips, arch.name), "SRAM of the IPU", "the fullest IPU",
              mem.used(), mem.available, "bytes",
              fmt::format("at the tightest layout ({}), an IPU needs {:.2f} GiB of {:.2f}: weights {:.2f}, gradients "
                          "{:.2f}, optimizer state {:.2f}, activations {:.2f}; the embeddings and LM head alone "
                          "({:.0f} parameters, kept on one IPU) need {:.2f} GiB with their gradients and state",
                          choice.least_over->report.layout, mem.used() / gib, mem.available / gib, mem.weights / gib,
                          mem.gradients / gib, mem.optimizer / gib, mem.activations / gib, m.cost.outside.parameters,
                          m.cost.outside.parameters * (kBytes.weight + kBytes.gradient + kBytes.optimizer) / gib),
              "more IPUs per pipeline (--pp), --recompute full or a shorter --seq"},
          {}};
}

}  // namespace tessera::target
