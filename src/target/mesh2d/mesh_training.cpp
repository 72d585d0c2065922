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
#include <optional>

#include "../training_common.hpp"
#include "mesh2d_training.hpp"
#include "tessera/target/mesh2d/mesh_compiler.hpp"
#include "tessera/target/mesh2d/mesh_timing.hpp"
#include "tessera/target/partitioning.hpp"

namespace tessera::target {

namespace {

constexpr double kWeightBytes = 2;          // fp16 weights stream in
constexpr double kGradientBytes = 2;        // fp16 gradients stream out
constexpr double kStoreBytes = 2 + 4 + 12;  // the store keeps fp16 weights, fp32 gradients, fp32 master, m, v
constexpr double kActivationBytes = 2;
constexpr double kAdamBytesPerParameter = 28;

// One step with each system's sequences in `micro` micro-batches run one after another, every
// micro-batch streaming the weights in and its gradients out (the store sums them).
TrainingOutcome stream_weights(const arch::ArchSpec& arch, const ModelSource& model, const CostedModel& m,
                               const TrainingWork& w, int64_t micro) {
  const auto& cost = m.cost;
  const int64_t batch = w.global_batch > 0 ? w.global_batch : default_global_batch(w.chips);
  if (batch % w.chips != 0) fail("--global-batch {} does not split evenly over {} systems", batch, w.chips);
  const auto per_system = static_cast<double>(batch / w.chips);
  const double per_micro = per_system / static_cast<double>(micro);
  const std::string dtype = arch.core.macs_per_cycle.contains("fp16") ? "fp16" : "fp32";
  const double peak = 2 * arch.peak_macs_per_second(dtype);
  const double io = arch.io.host_bytes_per_second;
  const double store_bw = arch.io.external_bytes_per_second > 0 ? arch.io.external_bytes_per_second : io;
  const double tree_latency =
      w.chips > 1 ? std::ceil(std::log2(static_cast<double>(w.chips))) * arch.chip_link.latency_s : 0;

  // Layer by layer: the weights' stream and the compute overlap, the slower sets the pace.
  struct LayerTimes {
    std::string name;
    double weights_in, grads_out, forward, backward;
  };
  std::vector<LayerTimes> times;
  double forward = 0, backward = 0, stream_bound = 0, compute = 0, largest_layer = 0;
  auto add_phase = [&](const compiler::PhaseCost& c, std::string name) {
    const double weights_in = c.parameters * kWeightBytes / io, grads_out = c.parameters * kGradientBytes / io;
    const double f = per_micro * c.forward_flops / peak, b = per_micro * (c.backward_flops + c.recompute_flops) / peak;
    const double tf = std::max(weights_in, f) + tree_latency, tb = std::max({weights_in, grads_out, b}) + tree_latency;
    forward += tf, backward += tb, compute += f + b;
    stream_bound += (weights_in > f ? tf : 0) + (std::max(weights_in, grads_out) > b ? tb : 0);
    largest_layer = std::max(largest_layer, c.parameters);
    times.push_back({std::move(name), weights_in, grads_out, f, b});
  };
  for (size_t l = 0; l < cost.layers.size(); ++l) add_phase(cost.layers[l], fmt::format("layer {}", l));
  add_phase(cost.outside, "LM head, loss and embeddings");  // one bucket, after the layers
  const double first_layer = cost.layers.empty() ? cost.outside.parameters : cost.layers.front().parameters;
  const double optimizer = first_layer * kAdamBytesPerParameter / store_bw;
  const double passes = static_cast<double>(micro);
  const double step = passes * (forward + backward) + optimizer;

  TrainingReport r;
  r.arch_name = arch.name, r.model_name = model.config.name, r.mode = "weight streaming";
  r.layout =
      fmt::format("{} system{}, data parallel, {} sequences each in {} micro-batch{}; weights from the external store",
                  w.chips, w.chips > 1 ? "s" : "", batch / w.chips, micro, micro > 1 ? "es" : "");
  r.chips = w.chips, r.global_batch = batch, r.seq = w.seq, r.micro_batches = micro;
  r.step_s = step;
  r.recompute = w.recompute;
  r.tokens_per_s = static_cast<double>(batch * w.seq) / step;
  r.model_flops_per_step = cost.model_flops() * static_cast<double>(batch);
  const double hardware_flops = (cost.model_flops() + cost.total().recompute_flops) * static_cast<double>(batch);
  const double machine_peak = peak * static_cast<double>(w.chips);
  r.mfu = r.model_flops_per_step / (machine_peak * step), r.hfu = hardware_flops / (machine_peak * step);
  r.hardware_flops_per_step = hardware_flops;
  r.communication_share = passes * stream_bound / step;
  r.breakdown = {{"forward (weights streaming in behind compute)", passes * forward},
                 {"backward (weights in, gradients out)", passes * backward},
                 {"optimizer in the store (first layer's update)", optimizer}};
  r.bound = stream_bound > compute ? "weight streaming (system I/O)" : "compute";

  // The wafer holds every layer's saved activations for its sequences and two layers' weights
  // (one computing, one arriving); the store holds the weights, gradients and AdamW state.
  const double sram = arch.usable_sram_per_core() * static_cast<double>(arch.usable.cores());
  r.memory.resource = "SRAM of the wafer";
  r.memory.available = sram;
  r.memory.weights = 2 * largest_layer * kWeightBytes;
  r.memory.activations = per_micro * cost.total().saved_elements * kActivationBytes;
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
                            per_micro, w.seq, r.memory.activations / gib, r.memory.weights / gib, sram / gib),
                "a shorter --seq (one sequence per micro-batch is the least a step can hold)"},
            {}};
  // The timeline: forward through the layers and the head, backward through them in reverse, the
  // store's last update. The tree's latency comes before each layer's work.
  double now = 0;
  auto place = [&](const LayerTimes& t, bool fwd) {
    now += tree_latency;
    const double work = fwd ? t.forward : t.backward;
    const std::string pass = fwd ? "forward " : "backward ";
    r.timeline.push_back({"weights in (store -> tree -> wafer)", pass + t.name, now, t.weights_in});
    if (!fwd) r.timeline.push_back({"gradients out (wafer -> tree -> store)", pass + t.name, now, t.grads_out});
    r.timeline.push_back({"wafer", pass + t.name, now, work});
    now += fwd ? std::max(t.weights_in, work) : std::max({t.weights_in, t.grads_out, work});
  };
  for (const auto& t : times) place(t, true);
  for (auto t = times.rbegin(); t != times.rend(); ++t) place(*t, false);
  const double one_pass = now;
  const size_t one_pass_events = r.timeline.size();
  for (int64_t i = 1; i < micro; ++i) {  // the other micro-batches repeat the first one's slices
    for (size_t e = 0; e < one_pass_events; ++e) {
      TimelineEvent copy = r.timeline[e];
      copy.start_s += static_cast<double>(i) * one_pass;
      copy.name += fmt::format(" (micro-batch {})", i);
      r.timeline.push_back(copy);
    }
  }
  r.timeline.push_back({"optimizer (store)", "AdamW of the last gradients", passes * one_pass, optimizer});
  const double streamed =
      passes * cost.total().parameters * (2 * kWeightBytes + kGradientBytes) * static_cast<double>(w.chips);
  const auto mac_pj = arch.energy.mac_pj.contains(dtype) ? arch.energy.mac_pj.at(dtype) : 0.0;
  r.energy_per_step_j = (hardware_flops / 2 * mac_pj + streamed * arch.energy.offchip_pj_per_byte) * 1e-12;
  r.assumptions = {"matrix products at the wafer's peak (no efficiency factor: an upper bound on speed)",
                   "micro-batches run one after another, each streaming the weights in and its gradients out",
                   "the store applies AdamW at the system I/O rate, overlapped with the backward pass but for the "
                   "first layer",
                   "each level of the broadcast/reduce tree adds the chip-to-chip latency"};
  return {{}, r};
}

// The model placed for training with its state resident (compile_for_mesh's place_for_training):
// every weight's `copies` of `element` bytes, and the saved activations of `sequences` sequences
// in `element`-byte values beside each layer and the head. A state larger than the wafer's SRAM is
// a failure without placing (the costly part).
struct ResidentPlacement {
  compiler::MeshCompileResult compiled;
  double saved_bytes = 0;  // all layers and the head
};
ResidentPlacement place_resident(const ArchSource& wafer, const ModelSource& model, const compiler::TrainingCost& cost,
                                 int64_t seq, const PrecisionPolicy& precision, int64_t element, int64_t copies,
                                 int64_t sequences) {
  double layer_saved = 0;
  for (const auto& layer : cost.layers) layer_saved = std::max(layer_saved, layer.saved_elements);
  const auto saved_layer = static_cast<int64_t>(std::ceil(layer_saved)) * sequences * element;
  const auto saved_head = static_cast<int64_t>(std::ceil(cost.outside.saved_elements)) * sequences * element;
  ResidentPlacement r{{}, static_cast<double>(saved_layer * model.config.n_layers + saved_head)};
  const double sram = wafer.spec.usable_sram_per_core() * static_cast<double>(wafer.spec.usable.cores());
  if (cost.total().parameters * static_cast<double>(copies * element) > sram) {
    r.compiled.status = compiler::FitFailure{};
    return r;
  }
  r.compiled = compiler::compile_for_mesh(model.config, model.yaml, model.origin, wafer.spec, wafer.yaml, wafer.origin,
                                          {.prompt_tokens = seq,
                                           .max_new_tokens = 0,
                                           .precision = precision,
                                           .lowered = &model.lowered(),
                                           .weight_copies = copies,
                                           .saved_bytes_per_layer = saved_layer,
                                           .saved_bytes_head = saved_head,
                                           .place_for_training = true});
  return r;
}

// Layer-pipelined training with weights resident (small models; Cerebras' original execution
// mode): the model placed as for inference, a region per layer and one for the LM head, each sized
// to hold its weights' fp16 copy, fp32 master, gradient and AdamW moments and the saved activations
// of the sequences in flight; sequences flow through the stages one per micro-batch on a 1F1B
// schedule; each core updates its own weights. N systems each hold a replica and sum their
// gradients through the broadcast/reduce tree. Timing: a layer stage's forward pass of one
// sequence is its whole-prompt prefill on the mesh timing model (compute and collectives); its
// backward pass the forward's time scaled by the layer's backward-to-forward FLOPs.
TrainingOutcome layer_pipelined(const ArchSource& wafer, const ModelSource& model, const CostedModel& m,
                                const TrainingWork& w) {
  const arch::ArchSpec& arch = wafer.spec;
  const auto& cost = m.cost;
  const int64_t batch = w.global_batch > 0 ? w.global_batch : default_global_batch(w.chips);
  if (batch % w.chips != 0) fail("--global-batch {} does not split evenly over {} systems", batch, w.chips);
  const int64_t per_system = batch / w.chips;
  const bool fp16 = arch.core.macs_per_cycle.contains("fp16");
  const std::string dtype = fp16 ? "fp16" : "fp32";
  const int64_t element = fp16 ? 2 : 4;
  // Per weight: its stored copy, and fp32 master (with fp16), gradient, m and v.
  const int64_t state_bytes = element + (fp16 ? 4 : 0) + 4 + 4 + 4;
  const int64_t stages = model.config.n_layers + 1;
  const int64_t in_flight = std::min(per_system, stages);  // 1F1B: the first stage holds p sequences
  const double parameters = cost.total().parameters;
  const double sram = arch.usable_sram_per_core() * static_cast<double>(arch.usable.cores());
  const ResidentPlacement placed = place_resident(wafer, model, cost, w.seq, PrecisionPolicy::uniform(dtype), element,
                                                  state_bytes / element, in_flight);
  const compiler::MeshCompileResult& compiled = placed.compiled;
  if (!compiled.status) {
    const double saved = placed.saved_bytes;
    const double need = parameters * static_cast<double>(state_bytes) + saved;
    const double gib = 1024.0 * 1024 * 1024;
    return {compiler::FitFailure{
                model.config.name, fmt::format("{} x {}", w.chips, arch.name), "SRAM of the wafer",
                "a region per layer, weights resident", need, sram, "bytes",
                fmt::format("{:.0f} parameters x {} bytes ({} weights, fp32 master, gradients, AdamW "
                            "m and v) and {:.2f} GiB of activations for {} sequences in flight need "
                            "{:.2f} GiB in {:.2f} GiB",
                            parameters, state_bytes, dtype, saved / gib, in_flight, need / gib, sram / gib),
                "weight streaming (larger models train that way)"},
            {}};
  }
  const program::Program& plan = compiled.program;
  const double clock = arch.clock_hz;
  const std::vector<double> cycles = sim::prefill_stage_cycles(plan);
  // The stage that sets the pace: the slowest forward + backward of one sequence. The LM head's
  // plan step computes the last token's logits only; training computes every token's, so its time
  // is a layer's scaled by FLOPs per core.
  const compiler::PhaseCost& layer0 = cost.layers.front();
  const double layer0_cores = static_cast<double>(plan.stages.front().region.cores());
  double forward = 0, backward = 0;
  std::string slowest;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const bool layer = static_cast<int64_t>(i) < plan.layers;
    const compiler::PhaseCost& c = layer ? cost.layers.at(i) : cost.outside;
    const double f = layer ? cycles[i] / clock
                           : cycles.front() / clock * (c.forward_flops / layer0.forward_flops) *
                                 (layer0_cores / static_cast<double>(plan.stages[i].region.cores()));
    const double b = f * (c.backward_flops + c.recompute_flops) / c.forward_flops;
    if (f + b > forward + backward) forward = f, backward = b, slowest = plan.stages[i].name;
  }
  // Each core updates its own weights at the fp32 rate; the fullest stage's cores finish last.
  const program::Stage& fullest =
      *std::max_element(plan.stages.begin(), plan.stages.end(),
                        [](const auto& a, const auto& b) { return a.weight_bytes < b.weight_bytes; });
  const double core_parameters = static_cast<double>(fullest.weight_bytes) / static_cast<double>(state_bytes);
  const double fp32_flops_per_s = 2 * arch.core.macs_per_cycle.at("fp32") * clock;
  const double optimizer = cost.optimizer_flops / parameters * core_parameters / fp32_flops_per_s;
  const double io = arch.io.host_bytes_per_second;
  const double tree_latency =
      w.chips > 1 ? std::ceil(std::log2(static_cast<double>(w.chips))) * arch.chip_link.latency_s : 0;
  // Gradients out through the tree (summed on the way), the sums back: fp16 each way.
  const double reduce = w.chips > 1 ? 2 * (parameters * 2 / io + tree_latency) : 0;
  const PipelineSchedule schedule{forward, backward, reduce, optimizer, stages, per_system, 1};
  const auto mb = static_cast<double>(per_system), p = static_cast<double>(stages);
  const double pipeline = (mb + p - 1) * (forward + backward);
  const double step = pipeline + reduce + optimizer;

  TrainingReport r;
  r.arch_name = arch.name, r.model_name = model.config.name, r.mode = "layer-pipelined (weights resident)";
  r.layout =
      fmt::format("{} system{}, data parallel, {} sequences each through {} stages of {} cores (slowest: {})", w.chips,
                  w.chips > 1 ? "s" : "", per_system, stages, plan.stages.front().region.cores(), slowest);
  r.chips = w.chips, r.global_batch = batch, r.seq = w.seq, r.micro_batches = per_system;
  r.recompute = w.recompute;
  r.step_s = step;
  r.tokens_per_s = static_cast<double>(batch * w.seq) / step;
  r.model_flops_per_step = cost.model_flops() * static_cast<double>(batch);
  r.hardware_flops_per_step = (cost.model_flops() + cost.total().recompute_flops) * static_cast<double>(batch);
  const double machine_peak = 2 * arch.peak_macs_per_second(dtype) * static_cast<double>(w.chips);
  r.mfu = r.model_flops_per_step / (machine_peak * step), r.hfu = r.hardware_flops_per_step / (machine_peak * step);
  r.bubble_fraction = (p - 1) / (mb + p - 1);
  r.communication_share = reduce / step;
  r.breakdown = {{"forward and backward of every sequence (slowest stage)", mb * (forward + backward)},
                 {"pipeline fill and drain (1F1B bubble)", (p - 1) * (forward + backward)},
                 {"gradient reduction over the systems", reduce},
                 {"AdamW on the cores", optimizer}};
  r.bound = r.bubble_fraction > 0.5 ? "pipeline bubble (too few sequences per system for the stages)"
                                    : fmt::format("the slowest stage ({})", slowest);
  const double e = static_cast<double>(element);
  r.memory = {"SRAM per core",
              static_cast<double>(fullest.weight_bytes) * (fp16 ? e + 4 : e) / static_cast<double>(state_bytes),
              static_cast<double>(fullest.weight_bytes) * 4 / static_cast<double>(state_bytes),
              static_cast<double>(fullest.weight_bytes) * 8 / static_cast<double>(state_bytes),
              static_cast<double>(fullest.activation_bytes + fullest.kv_cache_bytes),
              arch.usable_sram_per_core()};
  const auto mac_pj = arch.energy.mac_pj.contains(dtype) ? arch.energy.mac_pj.at(dtype) : 0.0;
  r.energy_per_step_j =
      r.hardware_flops_per_step / 2 * mac_pj * 1e-12 +
      (w.chips > 1 ? 2 * parameters * 2 * static_cast<double>(w.chips) * arch.energy.offchip_pj_per_byte * 1e-12 : 0);
  r.timeline = one_f_one_b_timeline(schedule);
  r.assumptions = {
      "a stage's forward pass of one sequence is its whole-prompt prefill on the mesh timing model; its backward pass "
      "that time scaled by the backward-to-forward FLOPs (transposed products and collectives)",
      "the LM head's time is a layer stage's scaled by FLOPs per core",
      "one sequence per micro-batch; every stage holds the saved activations of min(sequences, stages) sequences",
      "each core applies AdamW to its own weights at the fp32 rate; energy counts MACs and the gradients' I/O only"};
  return {{}, r};
}

}  // namespace

// The wafer takes each system's sequences in one pass if their activations fit its SRAM; if not,
// with full recomputation (only each layer's input kept); if still not, in micro-batches, the
// fewest that fit (Cerebras' gradient accumulation). Of the ways that fit, the fastest step wins;
// the report says which was taken.
TrainingOutcome simulate_wafer_training(const ArchSource& wafer, const ModelSource& model, const TrainingWork& w) {
  const arch::ArchSpec& arch = wafer.spec;
  if (w.chips < 1) fail("training needs at least one system");
  if (w.tensor_parallel > 1 || w.pipeline_parallel > 1 || w.zero_stage > 1)
    fail("wafers train data parallel over systems (weights resident or streamed): --tp, --pp and --zero do not apply");
  if (w.micro_batch != 0)
    fail(
        "--micro-batch {}: a wafer chooses how its sequences split into micro-batches (the fastest that fits: weights "
        "resident, one sequence at a time through the layer stages, or streamed, as few micro-batches as hold)",
        w.micro_batch);
  if (w.attention != AttentionKernel::Fused)
    fail("--attention unfused is a GPU kernel path (scores in HBM); a wafer keeps attention scores in core SRAM");
  if (!w.sequence_parallel)
    fail("--no-sequence-parallel is for tensor-parallel GPUs; a wafer spreads every op over its cores");
  const int64_t batch = w.global_batch > 0 ? w.global_batch : default_global_batch(w.chips);
  const int64_t per_system = std::max<int64_t>(1, batch / w.chips);
  std::optional<TrainingOutcome> best, first_failure;
  for (const ir::Recompute recompute : {w.recompute, ir::Recompute::Full}) {
    TrainingWork work = w;
    work.recompute = recompute;
    const CostedModel costed = costed_model(model, work);
    for (int64_t micro = 1; micro <= per_system; ++micro) {
      if (per_system % micro != 0) continue;
      TrainingOutcome outcome = stream_weights(arch, model, costed, work, micro);
      if (!outcome.status) {
        if (!first_failure) first_failure = outcome;
        if (outcome.status.failure().resource != "SRAM of the wafer") return outcome;
        continue;
      }
      if (recompute != w.recompute)
        outcome.report.assumptions.insert(outcome.report.assumptions.begin(),
                                          fmt::format("recompute full: the activations kept with recompute {} do not "
                                                      "fit in the wafer's SRAM in one pass",
                                                      ir::recompute_name(w.recompute)));
      if (!best || outcome.report.step_s < best->report.step_s) best = outcome;
      break;  // more micro-batches only stream the weights more often
    }
    if (recompute == ir::Recompute::Full) break;
  }
  // Weights resident where the wafer holds the whole training state (Cerebras' layer-pipelined
  // mode for models that fit, "Weight Streaming Execution", 2022), else streamed; the report names
  // the other mode's step time. Not the faster of the two: weight streaming is timed at the
  // wafer's peak, the resident pipeline on the mesh timing model, and comparing them would pick
  // the idealisation.
  TrainingOutcome resident = layer_pipelined(wafer, model, costed_model(model, w), w);
  if (!resident.status) return best ? *best : *first_failure;
  if (best)
    resident.report.assumptions.push_back(
        fmt::format("weight streaming would take {:.4g} s per step", best->report.step_s));
  return resident;
}

TrainingValues wafer_training_values(const ArchSource& wafer, const ModelSource& model, const TrainingWork& w) {
  const arch::ArchSpec& arch = wafer.spec;
  if (w.chips != 1) fail("training with values runs on one {}", arch.name);
  const CostedModel costed = costed_model(model, w);
  const int64_t sequences = std::max<int64_t>(1, w.global_batch);
  constexpr int64_t kFloat = 4;   // fp32 values, gradients and moments
  constexpr int64_t kCopies = 4;  // per weight: the value, its gradient, AdamW's m and v
  const ResidentPlacement placed = place_resident(wafer, model, costed.cost, w.seq, {}, kFloat, kCopies, sequences);
  const compiler::MeshCompileResult& compiled = placed.compiled;
  if (!compiled.status) {
    const double total = costed.cost.total().parameters * kCopies * kFloat + placed.saved_bytes;
    const double sram = arch.usable_sram_per_core() * static_cast<double>(arch.usable.cores());
    const double gib = 1024.0 * 1024 * 1024;
    return {compiler::FitFailure{
                model.config.name, arch.name, "SRAM of the wafer", "a region per layer", total, sram, "bytes",
                fmt::format("{:.0f} parameters x {} fp32 copies (value, gradient, AdamW m and v) and {:.2f} GiB of "
                            "saved activations for {} sequences of {} tokens need {:.2f} GiB in {:.2f} GiB of SRAM{}",
                            costed.cost.total().parameters, kCopies, placed.saved_bytes / gib, sequences, w.seq,
                            total / gib, sram / gib,
                            total <= sram ? ", enough in total but not once split into per-layer regions" : ""),
                "fewer --batch sequences or a shorter --seq, or --no-numerics to time weight streaming"},
            {},
            ""};
  }
  const program::Program& plan = compiled.program;
  std::string layout;
  for (const program::Stage& stage : plan.stages)
    layout +=
        fmt::format("{}{} {}x{}", layout.empty() ? "" : ", ", stage.name, stage.region.width, stage.region.height);
  // A projection reading the rows layout splits k over its region's rows and n over its columns
  // (its partial sums allreduced down the columns); one reading the cols layout the other way.
  ref::Partitioning p;
  for (const program::Step& step : plan.prefill) {
    if (step.kernel != "projection") continue;
    const arch::Region& r = plan.stages.at(static_cast<size_t>(step.stage)).region;
    const bool rows_in = step.pattern == program::Pattern::AllreduceY;
    const compiler::LoweredOp* projection = model.lowered().projection(step.name);
    if (!projection) fail("the plan's matrix '{}' is no projection of the model graph", step.name);
    sim::add_training_split(p, *projection, rows_in ? r.height : r.width, rows_in ? r.width : r.height);
  }
  const auto fullest = std::max_element(plan.stages.begin(), plan.stages.end(), [](const auto& a, const auto& b) {
    return a.bytes_per_core() < b.bytes_per_core();
  });
  return {{},
          std::move(p),
          fmt::format("weights, gradients and AdamW state resident, a region per stage ({}), each matrix tiled over "
                      "its region's cores; {:.1f} of {:.1f} KiB per core used ({})",
                      layout, static_cast<double>(fullest->bytes_per_core()) / 1024, arch.usable_sram_per_core() / 1024,
                      fullest->name)};
}

}  // namespace tessera::target
