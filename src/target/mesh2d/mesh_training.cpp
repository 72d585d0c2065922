// Training on wafers (mesh2d) by weight streaming (Cerebras, "Weight Streaming Execution", 2022):
// the whole wafer runs one layer at a time; the layer's weights stream in from an external store
// (MemoryX) over the system I/O while the previous layer computes, activations stay in the
// wafer's SRAM, and in the backward pass the weights stream in again while the gradients stream
// out. With N systems a broadcast/reduce tree (SwarmX) sends every system the same weights and
// sums their gradients on the way back, so each system's I/O carries one copy either way and the
// tree adds a hop latency per level. The optimizer runs in the store, layer by layer as the
// gradients arrive; only the last layer's update (the first layer's) is exposed. Data parallel only.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "../training_common.hpp"
#include "mesh2d_training.hpp"

namespace tessera::target {

namespace {

constexpr double kWeightBytes = 2;          // fp16 weights stream in
constexpr double kGradientBytes = 2;        // fp16 gradients stream out
constexpr double kStoreBytes = 2 + 4 + 12;  // the store keeps fp16 weights, fp32 gradients, fp32 master, m, v
constexpr double kActivationBytes = 2;
constexpr double kAdamBytesPerParameter = 28;

TrainingOutcome stream_weights(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& w) {
  if (w.tensor_parallel > 1 || w.pipeline_parallel > 1 || w.zero_stage > 1)
    fail("wafers train by weight streaming, data parallel over systems: --tp, --pp and --zero do not apply");
  const CostedModel m = costed_model(model, w);
  const auto& cost = m.cost;
  const int64_t batch = w.global_batch > 0 ? w.global_batch : default_global_batch(w.chips);
  if (batch % w.chips != 0) fail("--global-batch {} does not split evenly over {} systems", batch, w.chips);
  const auto per_system = static_cast<double>(batch / w.chips);
  const std::string dtype = arch.core.macs_per_cycle.contains("fp16") ? "fp16" : "fp32";
  const double peak = 2 * arch.peak_macs_per_second(dtype);
  const double io = arch.io.host_bytes_per_second;
  const double store_bw = arch.io.external_bytes_per_second > 0 ? arch.io.external_bytes_per_second : io;
  const double tree_latency =
      w.chips > 1 ? std::ceil(std::log2(static_cast<double>(w.chips))) * arch.chip_link.latency_s : 0;

  // Layer by layer: the weights' stream and the compute overlap, the slower sets the pace.
  double forward = 0, backward = 0, stream_bound = 0, compute = 0, largest_layer = 0;
  auto add_phase = [&](const compiler::PhaseCost& c) {
    const double weights_in = c.parameters * kWeightBytes / io, grads_out = c.parameters * kGradientBytes / io;
    const double f = per_system * c.forward_flops / peak,
                 b = per_system * (c.backward_flops + c.recompute_flops) / peak;
    const double tf = std::max(weights_in, f) + tree_latency, tb = std::max({weights_in, grads_out, b}) + tree_latency;
    forward += tf, backward += tb, compute += f + b;
    stream_bound += (weights_in > f ? tf : 0) + (std::max(weights_in, grads_out) > b ? tb : 0);
    largest_layer = std::max(largest_layer, c.parameters);
  };
  for (const auto& layer : cost.layers) add_phase(layer);
  add_phase(cost.outside);
  const double first_layer = cost.layers.empty() ? cost.outside.parameters : cost.layers.front().parameters;
  const double optimizer = first_layer * kAdamBytesPerParameter / store_bw;
  const double step = forward + backward + optimizer;

  TrainingReport r;
  r.arch_name = arch.name, r.model_name = model.config.name, r.mode = "weight streaming";
  r.layout = fmt::format("{} system{}, data parallel, {} sequences each; weights from the external store", w.chips,
                         w.chips > 1 ? "s" : "", batch / w.chips);
  r.chips = w.chips, r.global_batch = batch, r.seq = w.seq, r.micro_batches = 1;
  r.step_s = step;
  r.recompute = w.recompute;
  r.tokens_per_s = static_cast<double>(batch * w.seq) / step;
  r.model_flops_per_step = cost.model_flops() * static_cast<double>(batch);
  const double hardware_flops = (cost.model_flops() + cost.total().recompute_flops) * static_cast<double>(batch);
  const double machine_peak = peak * static_cast<double>(w.chips);
  r.mfu = r.model_flops_per_step / (machine_peak * step), r.hfu = hardware_flops / (machine_peak * step);
  r.hardware_flops_per_step = hardware_flops;
  r.communication_share = stream_bound / step;
  r.breakdown = {{"forward (weights streaming in behind compute)", forward},
                 {"backward (weights in, gradients out)", backward},
                 {"optimizer in the store (first layer's update)", optimizer}};
  r.bound = stream_bound > compute ? "weight streaming (system I/O)" : "compute";

  // The wafer holds every layer's saved activations for its sequences and two layers' weights
  // (one computing, one arriving); the store holds the weights, gradients and AdamW state.
  const double sram = arch.usable_sram_per_core() * static_cast<double>(arch.usable.cores());
  r.memory.resource = "SRAM of the wafer";
  r.memory.available = sram;
  r.memory.weights = 2 * largest_layer * kWeightBytes;
  r.memory.activations = per_system * cost.total().saved_elements * kActivationBytes;
  const double store = cost.total().parameters * kStoreBytes;
  const double gib = 1024.0 * 1024 * 1024;
  if (arch.io.external_memory_bytes > 0 && store > arch.io.external_memory_bytes)
    return {compiler::FitFailure{model.config.name, fmt::format("{} x {}", w.chips, arch.name), "external memory",
                                 "the weight store", store, arch.io.external_memory_bytes, "bytes",
                                 fmt::format("{:.0f} parameters x {} bytes (fp16 weights, fp32 gradients, master "
                                             "weights and AdamW moments)",
                                             cost.total().parameters, kStoreBytes),
                                 "a larger store"},
            {}};
  if (r.memory.used() > sram)
    return {compiler::FitFailure{
                model.config.name, fmt::format("{} x {}", w.chips, arch.name), "SRAM of the wafer",
                "the activations of each system's sequences", r.memory.used(), sram, "bytes",
                fmt::format("{:.0f} sequences of {} tokens keep {:.1f} GiB of activations for the backward pass, plus "
                            "{:.2f} GiB for two layers' weights, in {:.1f} GiB",
                            per_system, w.seq, r.memory.activations / gib, r.memory.weights / gib, sram / gib),
                w.recompute == ir::Recompute::Full
                    ? "more systems, a smaller --global-batch or a shorter --seq"
                    : "more systems, a smaller --global-batch, a shorter --seq or --recompute full"},
            {}};
  const double streamed = cost.total().parameters * (2 * kWeightBytes + kGradientBytes) * static_cast<double>(w.chips);
  const auto mac_pj = arch.energy.mac_pj.contains(dtype) ? arch.energy.mac_pj.at(dtype) : 0.0;
  r.energy_per_step_j = (hardware_flops / 2 * mac_pj + streamed * arch.energy.offchip_pj_per_byte) * 1e-12;
  r.assumptions = {"matrix products at the wafer's peak (no efficiency factor: an upper bound on speed)",
                   "the store applies AdamW at the system I/O rate, overlapped with the backward pass but for the "
                   "first layer",
                   "each level of the broadcast/reduce tree adds the chip-to-chip latency"};
  return {{}, r};
}

}  // namespace

// Activations that do not fit in SRAM are recomputed (only each layer's input kept), as the
// issue of weight streaming on a wafer asks; the report says so.
TrainingOutcome simulate_wafer_training(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& w) {
  if (w.chips < 1) fail("training needs at least one system");
  TrainingOutcome outcome = stream_weights(arch, model, w);
  if (outcome.status || w.recompute == ir::Recompute::Full || outcome.status.failure().resource != "SRAM of the wafer")
    return outcome;
  TrainingWork full = w;
  full.recompute = ir::Recompute::Full;
  TrainingOutcome recomputed = stream_weights(arch, model, full);
  if (recomputed.status)
    recomputed.report.assumptions.insert(recomputed.report.assumptions.begin(),
                                         fmt::format("recompute full: the activations kept with recompute {} do not "
                                                     "fit in the wafer's SRAM",
                                                     ir::recompute_name(w.recompute)));
  return recomputed;
}

}  // namespace tessera::target
