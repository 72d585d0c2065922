#include "tessera/system/system.hpp"

#include <algorithm>
#include <cmath>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include "tessera/base/error.hpp"
#include "tessera/target/registry.hpp"

namespace tessera::system {

namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// What one chip contributes to a pipeline, for the requests it holds at once.
struct ChipTiming {
  double prefill_s = 0;            // the prompt(s) of one micro-batch
  double prefill_interval_s = 0;   // how soon the chip begins the next micro-batch's prompt
  double step_s = 0;               // one decode step of one micro-batch through this chip
  double interval_s = 0;           // how soon the chip takes the next micro-batch (its slowest internal stage)
  double energy_per_token_pj = 0;  // per generated token of one request
  double macs_per_token = 0;
  std::string bound;
};

// The stages of one pipeline: layers split evenly, embedding on the first and the LM head on the
// last, or (head_group > 0) on a group of chips of its own that split its vocabulary. With
// expert_group > 1 each layer stage is a group of chips splitting its layers' experts
// (ModelSlice::expert_shards), and the LM head has chips of its own.
struct Layout {
  std::vector<compiler::ModelSlice> layer_chips;  // one per layer stage
  int64_t head_group = 0;
  int64_t expert_group = 1;
  int64_t chips() const { return static_cast<int64_t>(layer_chips.size()) * expert_group + head_group; }
};

Layout pipeline(const ir::ModelConfig& m, int64_t layer_stages, int64_t head_group, int64_t expert_group = 1) {
  Layout out;
  out.head_group = head_group, out.expert_group = expert_group;
  const int64_t base = m.n_layers / layer_stages, extra = m.n_layers % layer_stages;
  for (int64_t c = 0; c < layer_stages; ++c)
    out.layer_chips.push_back(
        {base + (c < extra ? 1 : 0), c == 0, head_group == 0 && c + 1 == layer_stages, 1, expert_group});
  return out;
}

// Every layout of exactly `chips` chips: plain pipelines first, then with a head group, then with
// the experts of each stage split over groups of 2, 4, ... chips.
std::vector<Layout> layouts(const ir::ModelConfig& m, int64_t chips, const target::Capabilities& caps) {
  std::vector<Layout> out;
  if (chips <= m.n_layers) out.push_back(pipeline(m, chips, 0));
  for (int64_t h = 1; caps.head_groups && h < chips; ++h)
    if (chips - h <= m.n_layers) out.push_back(pipeline(m, chips - h, h));
  for (int64_t g = 2; caps.expert_groups && caps.head_groups && g <= m.n_experts; g *= 2)
    for (int64_t h = 1; h < chips; ++h)
      if ((chips - h) % g == 0 && (chips - h) / g <= m.n_layers) out.push_back(pipeline(m, (chips - h) / g, h, g));
  return out;
}

// The largest expert group layouts() may form.
int64_t largest_expert_group(const ir::ModelConfig& m, const target::Capabilities& caps) {
  int64_t g = 1;
  while (caps.expert_groups && g * 2 <= m.n_experts) g *= 2;
  return g;
}

class Evaluator {
 public:
  Evaluator(const Machine& machine, const Workload& work, const target::Target& target)
      : mc_(machine),
        w_(work),
        target_(target),
        caps_(target.capabilities()),
        model_{w_.model, w_.model_yaml, w_.model_origin} {}

  // One chip running `slice` for `batch` requests at once (targets that batch requests) or in
  // flight (one request per pass);
  // nullopt when it does not fit, with the reason in `why`. With `timed` false only the fit is
  // checked (the timing fields stay zero).
  std::optional<ChipTiming> chip(const compiler::ModelSlice& slice, int64_t batch, compiler::FitStatus& why,
                                 bool timed = true, int64_t resident = 0) const {
    resident = std::max(resident, batch);
    const auto key = std::make_tuple(slice.layers, slice.embedding, slice.lm_head, slice.head_shards,
                                     slice.expert_shards, batch, resident);
    {
      const std::lock_guard lock(mutex_);
      if (const auto it = cache_.find(key); it != cache_.end() && (it->second.timed || !timed || !it->second.timing)) {
        why = it->second.why;
        return it->second.timing;
      }
    }
    Cached c;
    c.timed = timed;
    c.timing = chip_timing(slice, batch, resident, c.why, timed);
    why = c.why;
    const std::lock_guard lock(mutex_);
    cache_[key] = c;
    return c.timing;
  }

  // The stages of `layout` for `batch` requests per chip, or nullopt with the reason in `why`.
  std::optional<std::vector<ChipTiming>> stages(const Layout& layout, int64_t batch, compiler::FitStatus& why,
                                                bool timed = true, int64_t resident = 0) const {
    std::vector<compiler::ModelSlice> slices = layout.layer_chips;
    if (layout.head_group > 0) slices.push_back({0, false, true, layout.head_group});
    if (timed) {
      // Distinct slices are compiled and simulated side by side (a long pipeline has at most four:
      // first, middle sizes, last), then read back from the cache in order below.
      std::vector<std::future<void>> running;
      std::set<std::tuple<int64_t, bool, bool, int64_t, int64_t>> seen;
      for (const auto& s : slices)
        if (seen.insert({s.layers, s.embedding, s.lm_head, s.head_shards, s.expert_shards}).second)
          running.push_back(std::async(std::launch::async, [this, s, batch, resident] {
            compiler::FitStatus ignored;
            chip(s, batch, ignored, true, resident);
          }));
      for (auto& r : running) r.get();
    }
    std::vector<ChipTiming> out;
    for (const auto& s : layout.layer_chips) {
      auto t = chip(s, batch, why, timed, resident);
      if (!t) return std::nullopt;
      out.push_back(*t);
    }
    if (layout.head_group > 0) {
      auto t = chip({0, false, true, layout.head_group}, batch, why, timed, resident);
      if (!t) return std::nullopt;
      out.push_back(*t);
    }
    return out;
  }

  // The smallest layout whose chips fit one request each, up to `max_chips`.
  std::optional<Layout> smallest_layout(int64_t max_chips, compiler::FitStatus& why) const {
    for (int64_t n = 1; n <= max_chips; ++n)
      for (const Layout& l : layouts(w_.model, n, caps_))
        if (stages(l, 1, why, false)) return l;
    return std::nullopt;
  }

  Result pipelined() const {
    Result r;
    compiler::FitStatus why;
    std::optional<Layout> layout = smallest_layout(mc_.chips, why);
    if (!layout) {
      if (!why) r.fit_failure = why.failure();
      r.note = mc_.chips == 1 ? why.message() + more_chips_hint()
                              : fmt::format("does not fit on {} x {}{}", mc_.chips, mc_.arch.name, more_chips_hint());
      return r;
    }
    // One request per pass: every request is its own micro-batch (one token per layer stage at a
    // time); otherwise the replica's requests split into one micro-batch per pipeline stage.
    const bool mesh = !caps_.batches_requests;
    struct Shape {
      int64_t replicas, per_replica, depth, micro;
    };
    const auto shape_of = [&](const Layout& l) {
      Shape s{mc_.chips / l.chips(), 0, static_cast<int64_t>(l.layer_chips.size()) + (l.head_group > 0 ? 1 : 0), 1};
      s.per_replica = cdiv(w_.batch, s.replicas);
      if (!mesh) s.micro = cdiv(s.per_replica, std::min(s.per_replica, s.depth));
      return s;
    };
    // The smallest layout holding one request, or where the batch's KV caches do not fit it, the
    // smallest larger one that holds them (fewer replicas, fewer layers per chip).
    const auto fits_batch = [&](const Layout& l, compiler::FitStatus& status) {
      const Shape s = shape_of(l);
      return stages(l, mesh ? s.per_replica : s.micro, status, false, s.per_replica).has_value();
    };
    if (compiler::FitStatus first; !fits_batch(*layout, first)) {
      std::optional<Layout> larger;
      for (int64_t n = layout->chips() + 1; !larger && n <= mc_.chips; ++n)
        for (const Layout& l : layouts(w_.model, n, caps_))
          if (compiler::FitStatus ignored; fits_batch(l, ignored)) {
            larger = l;
            break;
          }
      if (!larger) {
        if (!first) r.fit_failure = first.failure();
        r.note = fmt::format("{} requests per replica do not fit: {}", shape_of(*layout).per_replica, first.message());
        return r;
      }
      layout = larger;
    }
    const Shape shape = shape_of(*layout);
    const int64_t p = layout->chips(), per_replica = shape.per_replica, depth = shape.depth, micro = shape.micro;
    r.pipeline = p, r.replicas = shape.replicas, r.chips_used = p * r.replicas;
    const int64_t in_flight = cdiv(per_replica, micro);
    const auto chips = stages(*layout, mesh ? per_replica : micro, why, true, per_replica);
    if (!chips) {
      if (!why) r.fit_failure = why.failure();
      r.note = fmt::format("{} requests per replica do not fit: {}", per_replica, why.message());
      return r;
    }
    const double d_bytes = static_cast<double>(w_.model.d_model) * 4;  // the fp32 residual stream
    const auto& link = mc_.arch.chip_link;
    const auto hop = [&](double tokens) {
      return tokens * d_bytes / link.sustained_bytes_per_second() + link.latency_s;
    };
    // An expert group allreduces each layer's experts' outputs over its links: recursive halving
    // then doubling, 2 log2(g) messages and 2 (g - 1) / g of the bytes (tessera's choice of
    // algorithm; docs/systems.md).
    const auto g = static_cast<double>(layout->expert_group);
    const auto expert_allreduce = [&](double tokens) {
      return g > 1 ? 2 * std::log2(g) * link.latency_s +
                         2 * (g - 1) / g * tokens * d_bytes / link.sustained_bytes_per_second()
                   : 0.0;
    };
    // Links between consecutive stages; a head group also gathers its shards' best tokens.
    const auto hops = static_cast<double>(depth - 1);
    const double gather = layout->head_group > 1 ? link.latency_s : 0;
    // One token of a micro-batch crosses every stage and link in turn; the next micro-batch can
    // follow once the busiest stage (or link, whose latency overlaps) is free.
    const double link_s = hops * hop(static_cast<double>(micro)) + gather;
    double latency = link_s, prefill = hops * hop(static_cast<double>(micro * w_.prompt_tokens)) + gather;
    double interval = depth > 1 ? static_cast<double>(micro) * d_bytes / link.sustained_bytes_per_second() : 0;
    // The next micro-batch's prompt follows once the busiest chip (or link) is free of this one's.
    double prefill_interval =
        depth > 1 ? static_cast<double>(micro * w_.prompt_tokens) * d_bytes / link.sustained_bytes_per_second() : 0;
    double energy = 0, macs = 0;
    const ChipTiming* slowest = &chips->front();
    double slowest_step = 0, expert_link_s = 0, expert_link_bytes = 0;  // link: per generated token
    for (size_t i = 0; i < chips->size(); ++i) {
      ChipTiming c = (*chips)[i];
      const bool head_group = layout->head_group > 0 && i + 1 == chips->size();
      const auto copies = static_cast<double>(head_group ? layout->head_group : layout->expert_group);
      if (!head_group && g > 1) {
        const auto layers = static_cast<double>(layout->layer_chips[i].layers);
        const double per_step = layers * expert_allreduce(static_cast<double>(micro));
        c.step_s += per_step, c.interval_s += per_step, expert_link_s += per_step;
        const double prefill_allreduces = layers * expert_allreduce(static_cast<double>(micro * w_.prompt_tokens));
        c.prefill_s += prefill_allreduces, c.prefill_interval_s += prefill_allreduces;
        expert_link_bytes += layers * 2 * (g - 1) * d_bytes;
      }
      latency += c.step_s, prefill += c.prefill_s;
      energy += c.energy_per_token_pj * copies, macs += c.macs_per_token * copies;
      interval = std::max(interval, c.interval_s);
      prefill_interval = std::max(prefill_interval, c.prefill_interval_s);
      if (c.step_s > slowest_step) slowest = &(*chips)[i], slowest_step = c.step_s;
    }
    energy += (hops * d_bytes + (layout->head_group > 0 ? static_cast<double>(layout->head_group - 1) * d_bytes : 0) +
               expert_link_bytes) *
              mc_.arch.energy.offchip_pj_per_byte;
    const double step = std::max(latency, static_cast<double>(in_flight) * interval);
    r.fits = true;
    r.mapping = p == 1 ? "1 chip" : fmt::format("pipeline {}", layout->layer_chips.size());
    if (layout->expert_group > 1) r.mapping += fmt::format(" x experts {}", layout->expert_group);
    if (layout->head_group > 0) r.mapping += fmt::format(" + head {}", layout->head_group);
    if (r.replicas > 1) r.mapping += fmt::format(" x data {}", r.replicas);
    r.time_to_first_token_s = prefill;
    r.tokens_per_s_per_user = 1 / step;
    r.tokens_per_s = r.tokens_per_s_per_user * static_cast<double>(w_.batch);
    serve(r, static_cast<double>(in_flight - 1) * prefill_interval);
    r.energy_per_token_j = energy * 1e-12;
    r.utilization = macs * r.tokens_per_s /
                    (mc_.arch.peak_macs_per_second(w_.precision.activations) * static_cast<double>(r.chips_used));
    r.bound = link_s + expert_link_s > latency - link_s - expert_link_s ? "link" : slowest->bound;
    return r;
  }

  // Experts over a group of `e` GPUs, each serving its share of the requests with attention
  // data-parallel (compiler::GpuCompileOptions::expert_parallel).
  Result expert_parallel(int64_t e) const {
    Result r;
    if (e > mc_.chips) {
      r.note = fmt::format("--ep {} needs {} x {} (--arch {}x{}); this system has {}", e, e, mc_.arch.name, e,
                           mc_.arch.name, mc_.chips);
      return r;
    }
    // Replicas only while each GPU of a group still has a request of its own (every GPU runs
    // attention for its requests; the plan times a group whose GPUs are equally loaded).
    const int64_t replicas = std::max<int64_t>(1, std::min(mc_.chips / e, w_.batch / e));
    if (w_.batch < e) {
      r.note = fmt::format("--ep {} serves at least one request per GPU of the group; batch {} leaves GPUs idle", e,
                           w_.batch);
      return r;
    }
    const target::ChipWork work{.prompt_tokens = w_.prompt_tokens,
                                .max_new_tokens = w_.max_new_tokens,
                                .micro_batch = cdiv(cdiv(w_.batch, replicas), e),
                                .expert_parallel = e,
                                .precision = w_.precision,
                                .routing = w_.routing};
    const auto compiled = target_.compile(model_, work);
    if (!compiled.status) {
      r.fit_failure = compiled.status.failure();
      r.note = compiled.status.message();
      return r;
    }
    r.replicas = replicas, r.chips_used = e * replicas;
    group_result(r, target_.simulate(*compiled.plan, {.fidelity = w_.fidelity}), fmt::format("expert {}", e));
    return r;
  }

  Result tensor_parallel() const {
    Result r;
    std::vector<int64_t> groups;
    if (w_.tensor_parallel > 0)
      groups = {w_.tensor_parallel};
    else
      for (int64_t g = 1; g <= w_.model.n_kv_heads; ++g)
        if (w_.model.n_heads % g == 0 && w_.model.n_kv_heads % g == 0 && w_.model.d_ff % g == 0) groups.push_back(g);
    std::optional<target::RunReport> fitted;
    compiler::FitStatus why;
    int64_t t = 0;
    for (const int64_t g : groups) {
      // A group serves its share of the batch; try the share a group of this size would get.
      const int64_t replicas = std::max<int64_t>(1, mc_.chips / g);
      const target::ChipWork work{.prompt_tokens = w_.prompt_tokens,
                                  .max_new_tokens = w_.max_new_tokens,
                                  .micro_batch = cdiv(w_.batch, replicas),
                                  .tensor_parallel = g,
                                  .precision = w_.precision,
                                  .routing = w_.routing};
      const auto compiled = target_.compile(model_, work);
      if (compiled.status) {
        t = g;
        if (g <= mc_.chips) fitted = target_.simulate(*compiled.plan, {.fidelity = w_.fidelity});
        break;
      }
      if (why) why = compiled.status;
    }
    if (t > mc_.chips) {
      if (!why) r.fit_failure = why.failure();  // a group of the chips the system has does not hold it
      r.note = fmt::format("needs a tensor-parallel group of {} x {} (--arch {}x{}); this system has {}", t,
                           mc_.arch.name, t, mc_.arch.name, mc_.chips);
      return r;
    }
    if (!fitted) {
      if (!why) r.fit_failure = why.failure();
      r.note = why.message();
      return r;
    }
    r.tensor = t, r.replicas = mc_.chips / t, r.chips_used = t * r.replicas;
    group_result(r, *fitted, t == 1 ? "1 chip" : fmt::format("tensor {}", t));
    return r;
  }

 private:
  // A group of chips' run (a tensor- or expert-parallel group) as the system's, its replicas
  // (already in `r`) sharing the batch.
  void group_result(Result& r, const target::RunReport& g, std::string mapping) const {
    r.fits = true;
    r.mapping = std::move(mapping);
    if (r.replicas > 1) r.mapping += fmt::format(" x data {}", r.replicas);
    r.time_to_first_token_s = g.time_to_first_token_s;
    r.tokens_per_s_per_user = g.tokens_per_s_per_user;
    r.tokens_per_s = r.tokens_per_s_per_user * static_cast<double>(w_.batch);
    serve(r, 0);  // a group prefills its requests in one pass
    r.energy_per_token_j = g.energy_per_token_pj * 1e-12;
    r.utilization = g.utilization;
    r.bound = g.bound;
  }

  std::optional<ChipTiming> chip_timing(const compiler::ModelSlice& slice, int64_t batch, int64_t resident,
                                        compiler::FitStatus& why, bool timed) const {
    const target::ChipWork work{.prompt_tokens = w_.prompt_tokens,
                                .max_new_tokens = w_.max_new_tokens,
                                .micro_batch = caps_.batches_requests ? batch : 1,
                                .resident_requests = resident,
                                .precision = w_.precision,
                                .slice = slice,
                                .fidelity = w_.fidelity,
                                .routing = w_.routing};
    const auto compiled = target_.compile(model_, work);
    if (!compiled.status) {
      why = compiled.status;
      return std::nullopt;
    }
    if (!timed) return ChipTiming{};
    const target::RunReport run = target_.simulate(*compiled.plan, {.fidelity = w_.fidelity});
    return ChipTiming{run.time_to_first_token_s, run.prefill_interval_s, run.decode_step_s, run.decode_interval_s,
                      run.energy_per_token_pj,   run.macs_per_token,     run.bound};
  }

  // The batch served as one closed batch: every request's prompt (the head's by the time to first
  // token, the others `later_prefills` after it), then the remaining generated tokens of all at the
  // decode rate (no interleaving of prompts and decode steps). With nothing generated, the prompt
  // tokens the batch processes per second.
  void serve(Result& r, double later_prefills) const {
    if (w_.max_new_tokens == 0) {  // nothing generated (an encoder): the prompt tokens processed
      r.served_tokens_per_s =
          static_cast<double>(w_.batch * w_.prompt_tokens) / (r.time_to_first_token_s + later_prefills);
      return;
    }
    const double decode =
        w_.max_new_tokens > 1 ? static_cast<double>(w_.max_new_tokens - 1) / r.tokens_per_s_per_user : 0.0;
    r.served_tokens_per_s =
        static_cast<double>(w_.batch * w_.max_new_tokens) / (r.time_to_first_token_s + later_prefills + decode);
  }

  // "; N chips would fit (--arch NxNAME)" for the smallest system that would hold the model.
  std::string more_chips_hint() const {
    compiler::FitStatus why;
    const int64_t group = largest_expert_group(w_.model, caps_), limit = 4 * w_.model.n_layers * group;
    for (int64_t n = mc_.chips + 1; n <= limit; ++n) {
      for (const Layout& l : layouts(w_.model, n, caps_))
        if (stages(l, 1, why, false)) return fmt::format("; {} would fit (--arch {}x{})", n, n, mc_.arch.name);
    }
    if (group > 1)
      return fmt::format(
          "; no pipeline of up to {} chips fits: one layer alone, its experts split over {} chips, does not fit one {} "
          "(tessera splits only a layer's experts across chips)",
          limit, group, mc_.arch.name);
    return fmt::format(
        "; no pipeline of up to {} chips fits: one layer alone does not fit one {} (tessera does not "
        "split a layer across {} chips)",
        limit, mc_.arch.name, mc_.arch.name);
  }

  const Machine& mc_;
  const Workload& w_;
  const target::Target& target_;
  const target::Capabilities caps_;
  const target::ModelSource model_;
  struct Cached {
    std::optional<ChipTiming> timing;
    compiler::FitStatus why;
    bool timed = false;
  };
  mutable std::map<std::tuple<int64_t, bool, bool, int64_t, int64_t, int64_t, int64_t>, Cached> cache_;
  mutable std::mutex mutex_;
};

}  // namespace

Result evaluate(const Machine& machine, const Workload& work) {
  if (machine.chips < 1) fail("a system needs at least one chip, got {}", machine.chips);
  if (work.batch < 1) fail("batch must be >= 1, got {}", work.batch);
  const auto target = target::make_target({machine.arch, machine.arch_yaml, machine.arch_origin});
  if (const Status s = target->supports(work.precision); !s) {
    Result r;
    r.note = s.message();
    return r;
  }
  if (work.model.n_experts > 0 && !target->capabilities().mixture_of_experts) {
    Result r;
    r.note = fmt::format("{} is a mixture of experts: {} does not lower those yet", work.model.name, machine.arch.name);
    return r;
  }
  const Evaluator e(machine, work, *target);
  const bool experts_over_gpus = target->capabilities().expert_parallel;
  if (work.expert_parallel > 1) {
    if (experts_over_gpus) return e.expert_parallel(work.expert_parallel);
    Result r;
    r.note = fmt::format("--ep is for GPU-like chips (shared_memory); {} chips form pipelines", machine.arch.name);
    return r;
  }
  if (work.expert_parallel == 0 && work.tensor_parallel == 0 && experts_over_gpus && work.model.n_experts > 0) {
    // Neither layout asked for: the tensor-parallel one, or experts over a group of 2, 4, ... GPUs
    // where that serves the batch faster (then sooner to the first token).
    Result best = e.tensor_parallel();
    for (int64_t g = 2; g <= std::min(machine.chips, work.model.n_experts) && g <= work.batch; g *= 2) {
      Result r = e.expert_parallel(g);
      if (r.fits && (!best.fits || r.tokens_per_s > best.tokens_per_s ||
                     (r.tokens_per_s == best.tokens_per_s && r.time_to_first_token_s < best.time_to_first_token_s)))
        best = std::move(r);
    }
    return best;
  }
  if (target->capabilities().tensor_parallel) return e.tensor_parallel();
  if (work.tensor_parallel > 1) {
    Result r;
    r.note = fmt::format("--tp is for GPU-like chips (shared_memory); {} chips form pipelines", machine.arch.name);
    return r;
  }
  return e.pipelined();
}

std::pair<int64_t, std::string> parse_machine_name(const std::string& text) {
  const size_t x = text.find('x');
  if (x == std::string::npos || x == 0 || !std::all_of(text.begin(), text.begin() + static_cast<long>(x), ::isdigit))
    return {1, text};
  const std::string name = text.substr(x + 1);
  const int64_t chips = x <= 6 ? std::stoll(text.substr(0, x)) : 0;
  if (chips < 1 || name.empty())
    fail("'{}': write a system as COUNTxARCH with COUNT >= 1 (e.g. 4xwse3), or just ARCH", text);
  return {chips, name};
}

}  // namespace tessera::system
