// Training on GPU-like chips (shared_memory): Megatron-style 3D parallelism. Tensor parallelism
// splits every layer over tp chips of a node (two all-reduces of the layer's activations forward,
// two backward: Shoeybi et al. 2019); a 1F1B pipeline of pp stages runs m micro-batches per step
// with (p - 1) / (m + p - 1) of it idle, or (p - 1) / (v m + p - 1) when each chip holds v
// interleaved chunks of layers (Narayanan et al. SC'21); dp data-parallel replicas
// all-reduce gradients, with ZeRO stages 1-3 sharding optimizer state, gradients and weights
// (Rajbhandari et al. 2020). Mixed precision: bf16 weights and activations, fp32 gradients and
// AdamW state (2 + 4 + 12 bytes per parameter). Every size comes from the training graph.
#include <fmt/core.h>

#include <algorithm>
#include <limits>

#include "../training_common.hpp"
#include "gemm_tiling.hpp"
#include "shared_memory_training.hpp"

namespace tessera::target {

namespace {

constexpr MixedPrecisionBytes kBytes = kMixedPrecision;

struct Layout {
  int64_t tp = 1, pp = 1, dp = 1;
};

// Unfused attention (Megatron-LM's path: q k^T, a fused scale-mask-softmax, dropout, then p v,
// each a kernel of its own, the scores in HBM) against the graph's fused counts, per sequence.
// Its kernels compute all s^2 query-key pairs and mask half. Forward: 2 products per pair; the
// gradient: 4, reading the probabilities from HBM; a recompute (full, or Megatron's selective one
// of the scores) runs the forward's 2 again. HBM bytes per pair, 2-byte activations and a 1-byte
// dropout mask: forward or recomputed 13 — q k^T writes S (2), softmax reads S and writes P (4),
// dropout reads P and writes D and its mask (5), p v reads D (2); backward 19 — dO v^T writes dD
// (2), D^T dO reads D (2), dropout's gradient reads dD and the mask and writes dP (5), softmax's
// reads P and dP and writes dS (6), dS k and dS^T q read dS (4). Scores not recomputed stay in HBM
// until the backward pass: P, the mask and D, 5 bytes per pair (Korthikanti et al. 2022, Table 2),
// of which the graph's saved activations already hold P over the causal pairs.
struct UnfusedAttention {
  double extra_forward_flops = 0, extra_backward_flops = 0;
  double forward_bytes = 0, backward_bytes = 0, kept_bytes = 0;
};

UnfusedAttention unfused_attention(const compiler::PhaseCost& c, int64_t seq) {
  if (c.forward_attention_pairs <= 0) return {};
  const auto s = static_cast<double>(seq);
  // Pairs computed per counted pair: the whole square per causal triangle (an encoder counts them all).
  const double square = c.bidirectional ? 1.0 : 2 * s / (s + 1);
  const double product = c.forward_attention_flops / 2;  // one s x s x head_dim product as counted
  const double again = std::max(c.recompute_attention_pairs, c.rescored_attention_pairs);
  const double again_share = again / c.forward_attention_pairs;
  UnfusedAttention u;
  u.extra_forward_flops = (square - 1) * c.forward_attention_flops;
  u.extra_backward_flops = square * product * (2 * again_share + 4) - c.backward_attention_flops;
  u.forward_bytes = 13 * square * c.forward_attention_pairs;
  u.backward_bytes = square * (13 * again + 19 * c.backward_attention_pairs);
  u.kept_bytes = (5 * square - kMixedPrecision.activation) * std::max(0.0, c.forward_attention_pairs - again);
  return u;
}

// A stage's weight products for one micro-batch on one GPU of the tensor-parallel group, tiled
// over its SMs in waves (gemm_tiling.hpp) at the sustained rate, a split K's reduction included: their seconds forward
// and backward (recompute included) and the FLOPs per sequence they take out of the flat-rate count.
struct TiledProducts {
  double forward_s = 0, backward_s = 0, forward_flops = 0, backward_flops = 0;
};

TiledProducts tiled_products(const arch::ArchSpec& arch, const compiler::PhaseCost& stage, int64_t micro_batch,
                             int64_t tp) {
  using Dim = compiler::MatrixProduct::Dim;
  const GemmRate rate = gemm_rate(arch, "bf16");
  TiledProducts t;
  for (const compiler::MatrixProduct& p : stage.products) {
    int64_t dims[3] = {p.m, p.k, p.n};
    dims[static_cast<int>(p.tokens)] *= micro_batch;
    int64_t& split = dims[static_cast<int>(p.split)];
    split = (split + tp - 1) / tp;
    const auto tiling = fastest_tiling(arch, rate, {dims[static_cast<int>(Dim::M)]}, dims[static_cast<int>(Dim::N)],
                                       dims[static_cast<int>(Dim::K)], true);
    if (!tiling)
      fail("{}: no GEMM tile's pipeline fits {:.0f} KiB of shared memory per SM", arch.name,
           arch.core.sram_bytes / 1024);
    // A split K writes its partial sums while the waves run, and its reduction kernel follows.
    const double seconds =
        p.count * (std::max(tiling->cycles / arch.clock_hz, workspace_seconds(arch, tiling->kernel_workspace_bytes())) +
                   split_k_reduction_seconds(arch, *tiling, static_cast<double>(dims[static_cast<int>(Dim::M)]),
                                             static_cast<double>(dims[static_cast<int>(Dim::N)]), rate.element_bytes));
    (p.forward ? t.forward_s : t.backward_s) += seconds;
    (p.forward ? t.forward_flops : t.backward_flops) += p.flops();
  }
  return t;
}

LayoutEvaluation evaluate(const arch::ArchSpec& arch, const ModelSource& model, const CostedModel& m,
                          const TrainingWork& w, Layout lay, int64_t global_batch) {
  const auto& cost = m.cost;
  const auto layers = static_cast<int64_t>(cost.layers.size());
  const double peak = 2 * arch.peak_macs_per_second("bf16");
  const double sustained = peak * arch.gpu.matmul_efficiency;  // what large matrix products reach
  const int64_t node = arch.network.chips_per_node > 0 ? arch.network.chips_per_node : w.chips;
  const double net_bw =
      arch.network.chips_per_node > 0 ? arch.network.bytes_per_second : arch.chip_link.sustained_bytes_per_second();
  const double net_lat = arch.network.chips_per_node > 0 ? arch.network.latency_s : arch.chip_link.latency_s;
  const auto mb = static_cast<double>(w.micro_batch);
  const int64_t m_count = global_batch / (lay.dp * w.micro_batch);
  const auto m_micro = static_cast<double>(m_count);
  const auto tp = static_cast<double>(lay.tp), pp = static_cast<double>(lay.pp), dp = static_cast<double>(lay.dp);
  const auto v = static_cast<double>(w.interleave);

  // The heaviest stage: layers / pp of them, and the LM head and loss on the last.
  const int64_t per_stage = layers / lay.pp;
  const compiler::PhaseCost stage_layers = layers_cost(cost, layers - per_stage, layers);
  compiler::PhaseCost stage = stage_layers;
  stage.add(cost.outside);
  const double boundary = cost.layers.empty() ? 0 : cost.layers.back().boundary_elements;

  // One micro-batch through the stage: matrix products at the sustained rate; elementwise ops
  // (and unfused attention's scores) reading and writing HBM; a launch per kernel; tensor-parallel
  // all-reduces (2 forward, 2 backward per layer, 2 more when the layer's forward runs again); the
  // hand-over to the next stage.
  const double hbm = arch.gpu.sustained_hbm_bytes_per_second();
  // Elementwise elements and saved activations per chip: ops inside a layer's split matrices are
  // split over the tensor-parallel group; norms and residual adds only under sequence parallelism.
  const double whole_rows_split = w.sequence_parallel ? tp : 1;
  const double elementwise_per_chip =
      (stage.forward_elementwise + stage.backward_elementwise - stage.forward_whole_rows - stage.backward_whole_rows) /
          tp +
      (stage.forward_whole_rows + stage.backward_whole_rows) / whole_rows_split;
  const double saved_per_chip = (stage_layers.saved_elements - stage_layers.saved_whole_rows) / tp +
                                stage_layers.saved_whole_rows / whole_rows_split;
  const bool unfused = w.attention == AttentionKernel::Unfused;
  const UnfusedAttention scores = unfused ? unfused_attention(stage, w.seq) : UnfusedAttention{};
  // Weight products tiled in waves over the SMs; a fused attention kernel's FLOPs at its own
  // sustained rate (unfused attention runs as batched GEMMs); the other ops' FLOPs at the flat rate.
  const TiledProducts products = tiled_products(arch, stage, w.micro_batch, lay.tp);
  // A fused kernel's CTAs (blocks of queries, forward; of keys, backward: as many) run in waves.
  const double attention_rate = unfused ? sustained
                                        : peak * arch.gpu.attention_efficiency /
                                              attention_waves(arch, w.micro_batch, model.config.n_heads / lay.tp, w.seq)
                                                  .slowdown(arch.usable.cores());
  const double t_forward =
      mb * (stage.forward_flops - products.forward_flops - stage.forward_attention_flops + scores.extra_forward_flops) /
          tp / sustained +
      mb * stage.forward_attention_flops / tp / attention_rate + products.forward_s;
  const double t_backward = mb *
                                (stage.backward_flops + stage.recompute_flops - products.backward_flops -
                                 stage.backward_attention_flops + scores.extra_backward_flops) /
                                tp / sustained +
                            mb * stage.backward_attention_flops / tp / attention_rate + products.backward_s;
  const double t_elementwise = mb * elementwise_per_chip * kBytes.activation / hbm;
  const double t_scores = mb * (scores.forward_bytes + scores.backward_bytes) / tp / hbm;
  // A kernel launch per op of the training graph (forward, recompute, backward).
  const double t_launch = static_cast<double>(stage.forward_ops + stage.backward_ops) * arch.gpu.kernel_launch_s;
  const double layer_activation_bytes = mb * boundary * kBytes.activation;
  const double allreduces = (w.recompute == ir::Recompute::Full ? 6.0 : 4.0) * static_cast<double>(per_stage);
  const double t_tensor =
      allreduces * ring_allreduce_s(layer_activation_bytes, lay.tp, arch.chip_link.sustained_bytes_per_second(),
                                    arch.chip_link.latency_s);
  const bool stages_in_node = lay.tp * lay.pp <= node;
  const double t_handover =
      lay.pp > 1
          ? 2 * v *
                (layer_activation_bytes / tp / (stages_in_node ? arch.chip_link.sustained_bytes_per_second() : net_bw) +
                 (stages_in_node ? arch.chip_link.latency_s : net_lat))
          : 0;
  const double per_micro = t_forward + t_backward + t_elementwise + t_scores + t_launch + t_tensor + t_handover;
  // The schedule's length in micro-batch slots: m, plus the fill and drain of (p - 1) / v slots.
  const double slots = m_micro + (pp - 1) / v;
  const double pipeline = slots * per_micro;
  const double bubble = (pp - 1) / v / slots;

  // Data parallel: the gradient all-reduce (reduce-scatter + all-gather under ZeRO), plus ZeRO-3's
  // weight all-gathers forward and backward; not overlapped with the backward pass.
  const double local_params = stage.parameters / tp;
  const bool dp_in_node = lay.tp * lay.pp * lay.dp <= node;
  const double dp_bw = dp_in_node ? arch.chip_link.sustained_bytes_per_second() : net_bw;
  const double dp_lat = dp_in_node ? arch.chip_link.latency_s : net_lat;
  double t_data = ring_allreduce_s(local_params * kBytes.weight, lay.dp, dp_bw, dp_lat);
  // ZeRO-3's two weight all-gathers (forward, backward) each move half an all-reduce.
  if (w.zero_stage >= 3) t_data += ring_allreduce_s(local_params * kBytes.weight, lay.dp, dp_bw, dp_lat);
  const double optimizer_params = w.zero_stage >= 1 ? local_params / dp : local_params;
  const double t_optimizer = optimizer_params * kBytes.adam_update / hbm;
  const double step = pipeline + t_data + t_optimizer;

  TrainingReport r;
  r.arch_name = arch.name, r.model_name = model.config.name, r.mode = "3D parallel";
  r.layout = fmt::format("tp {} x pp {}{} x dp {}, ZeRO-{}, {} micro-batch{} of {} per pipeline", lay.tp, lay.pp,
                         w.interleave > 1 ? fmt::format(" (interleaved x{})", w.interleave) : "", lay.dp, w.zero_stage,
                         m_count, m_count > 1 ? "es" : "", w.micro_batch);
  r.chips = w.chips, r.global_batch = global_batch, r.seq = w.seq, r.micro_batches = m_count;
  r.step_s = step;
  r.recompute = w.recompute;
  r.tokens_per_s = static_cast<double>(global_batch * w.seq) / step;
  const auto sequences = static_cast<double>(global_batch);
  r.model_flops_per_step = cost.model_flops() * sequences;
  const compiler::PhaseCost whole = cost.total();
  const UnfusedAttention all_scores = unfused ? unfused_attention(whole, w.seq) : UnfusedAttention{};
  const double hardware_flops =
      (cost.model_flops() + whole.recompute_flops + all_scores.extra_forward_flops + all_scores.extra_backward_flops) *
      sequences;
  const double machine_peak = peak * static_cast<double>(w.chips);
  r.mfu = r.model_flops_per_step / (machine_peak * step), r.hfu = hardware_flops / (machine_peak * step);
  r.hardware_flops_per_step = hardware_flops;
  r.bubble_fraction = bubble;
  const double communication = slots * (t_tensor + t_handover) + t_data;
  r.communication_share = communication / step;
  r.breakdown = {{"forward", slots * t_forward * (1 - bubble)},
                 {"backward and recompute", slots * t_backward * (1 - bubble)},
                 {"elementwise ops (HBM-bound)", slots * t_elementwise * (1 - bubble)},
                 {"attention scores in HBM (unfused)", slots * t_scores * (1 - bubble)},
                 {"kernel launches", slots * t_launch * (1 - bubble)},
                 {"tensor-parallel all-reduces", slots * t_tensor * (1 - bubble)},
                 {"pipeline hand-overs", slots * t_handover * (1 - bubble)},
                 {"pipeline bubble", pipeline * bubble},
                 {"data-parallel gradients", t_data},
                 {"optimizer", t_optimizer}};
  const auto top = std::max_element(r.breakdown.begin(), r.breakdown.end(),
                                    [](const auto& a, const auto& b) { return a.second < b.second; });
  r.bound = top->first;

  // Memory of the heaviest stage's GPU.
  const double shard = dp;
  r.memory.resource = "HBM per GPU";
  r.memory.available = arch.gpu.hbm_bytes;
  r.memory.weights = local_params * kBytes.weight / (w.zero_stage >= 3 ? shard : 1);
  r.memory.gradients = local_params * kBytes.gradient / (w.zero_stage >= 2 ? shard : 1);
  r.memory.optimizer = local_params * kBytes.optimizer / (w.zero_stage >= 1 ? shard : 1);
  const double in_flight = std::min(pp, m_micro);  // 1F1B: the first stage holds p micro-batches' activations
  const double logits = mb * static_cast<double>(w.seq) * static_cast<double>(model.config.vocab_size) * 4 / tp;
  r.memory.activations = in_flight * mb * (saved_per_chip * kBytes.activation + scores.kept_bytes / tp) + logits;
  // Per GPU and step: weights read three times per micro-batch (forward, and backward for dx and
  // dW), the elementwise ops' tensors, the optimizer's state; all-reduce and gradient traffic.
  const double hbm_traffic =
      m_micro * (3 * local_params * kBytes.weight + mb * (elementwise_per_chip * kBytes.activation +
                                                          (scores.forward_bytes + scores.backward_bytes) / tp)) +
      optimizer_params * kBytes.adam_update;
  const double comm_bytes = m_micro * allreduces * layer_activation_bytes * 2 + local_params * kBytes.weight * 2;
  const auto mac_pj = arch.energy.mac_pj.contains("bf16") ? arch.energy.mac_pj.at("bf16") : 0.0;
  r.energy_per_step_j =
      (hardware_flops / 2 * mac_pj + static_cast<double>(w.chips) * (hbm_traffic * arch.energy.hbm_pj_per_byte +
                                                                     comm_bytes * arch.energy.offchip_pj_per_byte)) *
      1e-12;
  r.assumptions = {
      arch.gpu.matmul_efficiency < 1
          ? fmt::format("matrix products at {:.1f}% of the tensor peak (the arch's measured matmul_efficiency), "
                        "weight products in waves of CTA tiles over the SMs{}",
                        100 * arch.gpu.matmul_efficiency,
                        arch.gpu.l2_bytes_per_second > 0 ? ", each tile no faster than L2 feeds it" : "")
          : std::string("matrix products at the tensor peak (the arch gives no matmul_efficiency: an upper bound), "
                        "weight products in waves of CTA tiles over the SMs"),
      fmt::format(
          "elementwise ops unfused, each reading and writing its tensors in HBM once; a kernel launch of {:.1f} "
          "us per op of the training graph (unfused attention's extra kernels not counted)",
          arch.gpu.kernel_launch_s * 1e6),
      unfused ? "attention unfused: all s x s scores computed, softmax and dropout over them in HBM (13 bytes per "
                "score forward or recomputed, 19 backward)"
              : fmt::format("attention fused (FlashAttention-style): the scores stay on chip, its products at {:.1f}% "
                            "of the tensor peak",
                            100 * arch.gpu.attention_efficiency),
      w.sequence_parallel || lay.tp == 1
          ? "sequence parallelism: activations split over the tensor-parallel group"
          : "no sequence parallelism: norms, residual adds and their saved activations whole on every GPU of the "
            "tensor-parallel group",
      "gradients all-reduced in bf16 after the backward pass, not overlapped with it"};
  if (lay.tp > model.config.n_kv_heads)
    r.assumptions.emplace_back("tensor parallelism wider than the KV heads replicates them (the copies not counted)");
  const double handover_share = t_handover / 2;  // each direction's hand-over with its pass
  const double t_scores_forward = mb * scores.forward_bytes / tp / hbm;
  const double t_launch_forward = static_cast<double>(stage.forward_ops) * arch.gpu.kernel_launch_s;
  const PipelineSchedule schedule{
      t_forward + t_elementwise / 2 + t_scores_forward + t_launch_forward + t_tensor / 2 + handover_share,
      t_backward + t_elementwise / 2 + (t_scores - t_scores_forward) + (t_launch - t_launch_forward) + t_tensor / 2 +
          handover_share,
      t_data,
      t_optimizer,
      lay.pp,
      m_count,
      w.interleave};
  return {r, schedule, r.memory.used() <= r.memory.available};
}

}  // namespace

TrainingOutcome simulate_gpu_training(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& w) {
  if (w.chips < 1) fail("training needs at least one chip");
  check_micro_batch(w);
  if (w.zero_stage < 0 || w.zero_stage > 3) fail("--zero {}: ZeRO stages are 0 to 3", w.zero_stage);
  if (w.interleave < 1) fail("--interleave {}: interleaved chunks per chip are 1 or more", w.interleave);
  const CostedModel m = costed_model(model, w);
  const auto& c = model.config;
  const auto layers = static_cast<int64_t>(m.cost.layers.size());
  const int64_t node = arch.network.chips_per_node > 0 ? std::min(arch.network.chips_per_node, w.chips) : w.chips;
  std::vector<Layout> layouts;
  for (int64_t tp = 1; tp <= node; tp *= 2) {
    const bool heads_split = c.n_heads % tp == 0 && (c.n_kv_heads % tp == 0 || tp % c.n_kv_heads == 0);
    if ((w.tensor_parallel > 0 && tp != w.tensor_parallel) || !heads_split || c.d_ff % tp != 0) continue;
    for (int64_t pp = 1; pp <= layers && tp * pp <= w.chips; ++pp) {
      if ((w.pipeline_parallel > 0 && pp != w.pipeline_parallel) || layers % (pp * w.interleave) != 0 ||
          w.chips % (tp * pp) != 0 || (w.interleave > 1 && pp == 1))
        continue;
      layouts.push_back({tp, pp, w.chips / (tp * pp)});
    }
  }
  if (layouts.empty())
    fail(
        "no tensor x pipeline layout of {} chips for {}: tp must be a power of two within a node of {} dividing {} "
        "heads and d_ff {} (and dividing or a multiple of {} KV heads), pp x interleave ({}) must divide {} layers, "
        "and tp x pp must divide the chips",
        w.chips, c.name, node, c.n_heads, c.d_ff, c.n_kv_heads, w.interleave, layers);
  LayoutChoice choice;
  for (const Layout& lay : layouts)
    for (const int64_t micro_batch : micro_batch_candidates(w, lay.dp)) {
      TrainingWork sized = w;
      sized.micro_batch = micro_batch;
      const int64_t ways = lay.dp * micro_batch;
      const int64_t batch = w.global_batch > 0 ? w.global_batch : default_global_batch(ways);
      if (batch % ways != 0) {
        if (w.tensor_parallel > 0 && w.pipeline_parallel > 0 && w.micro_batch > 0)
          fail("--global-batch {} does not split into {} data-parallel replicas x micro-batches of {}", batch, lay.dp,
               micro_batch);
        continue;
      }
      choice.consider(evaluate(arch, model, m, sized, lay, batch));
    }
  if (choice.best) return choice.chosen();
  if (!choice.least_over)
    fail("--global-batch {} splits into none of the layouts of {} chips", w.global_batch, w.chips);
  const TrainingMemory& mem = choice.least_over->report.memory;
  const double gib = 1024.0 * 1024 * 1024;
  return {compiler::FitFailure{
              c.name, fmt::format("{} x {}", w.chips, arch.name), "HBM per GPU", "the fullest GPU", mem.used(),
              mem.available, "bytes",
              fmt::format("at the tightest layout ({}), each GPU needs {:.1f} GiB of {:.1f}: weights {:.1f}, gradients "
                          "{:.1f}, optimizer state {:.1f}, activations {:.1f}",
                          choice.least_over->report.layout, mem.used() / gib, mem.available / gib, mem.weights / gib,
                          mem.gradients / gib, mem.optimizer / gib, mem.activations / gib),
              "more GPUs, a higher --zero stage, --recompute full or a shorter --seq"},
          {}};
}

}  // namespace tessera::target
