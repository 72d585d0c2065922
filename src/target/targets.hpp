// The targets the registry knows; each lives in its fabric's folder (target/<fabric>/).
#pragma once

#include <algorithm>
#include <memory>

#include "tessera/ref/executor.hpp"
#include "tessera/target/target.hpp"

namespace tessera::target {

std::unique_ptr<Target> make_mesh2d_target(ArchSource arch);
std::unique_ptr<Target> make_exchange_target(ArchSource arch);
std::unique_ptr<Target> make_shared_memory_target(ArchSource arch);

// The concrete plan behind `plan`, or an Error naming the target that cannot run it.
template <typename Concrete>
const Concrete& plan_as(const Plan& plan, const char* fabric) {
  const auto* concrete = dynamic_cast<const Concrete*>(&plan);
  if (!concrete) fail("a plan for another fabric was given to a {} target", fabric);
  return *concrete;
}

// The fields of a RunReport every plan states: what ran, in which precision, for which request.
template <typename PlanType>
void describe_run(RunReport& r, const char* fabric, const PlanType& plan) {
  r.fabric = fabric;
  r.arch_yaml = plan.arch_yaml, r.arch_origin = plan.arch_origin;
  r.model_yaml = plan.model_yaml, r.model_origin = plan.model_origin;
  r.precision = plan.precision;
  r.prompt_tokens = plan.prompt_tokens, r.generated_tokens = plan.max_new_tokens;
}

// The RunReport fields a GPU's and an IPU's reports share (both time phases pass by pass).
template <typename PlanType, typename Report>
RunReport phase_timed_run(const char* fabric, const PlanType& plan, const Report& report) {
  const auto passes = static_cast<double>(std::max<int64_t>(plan.max_new_tokens - 1, 1));
  RunReport r;
  describe_run(r, fabric, plan);
  r.arch_name = report.arch_name, r.model_name = report.model_name;
  r.batch = plan.batch;
  r.prefill_s = report.prefill.seconds, r.decode_s = report.decode.seconds;
  r.time_to_first_token_s = report.time_to_first_token_s;
  r.tokens_per_s_per_user = report.decode_tokens_per_s_per_user, r.tokens_per_s = report.decode_tokens_per_s;
  r.decode_step_s = r.decode_interval_s = report.decode.seconds / passes;
  r.prefill_interval_s = report.prefill.seconds;  // kernels and supersteps one after another
  r.energy_per_token_pj = report.decode_energy_per_token_pj;
  r.macs_per_token = report.decode.macs / (passes * static_cast<double>(plan.batch));
  r.utilization = report.decode_utilization;
  r.bound = report.decode_bound;
  return r;
}

// The reference executor as a target's executor: for targets without a data plane, run with the
// plan's arithmetic order (ref::Partitioning) and precision.
class ReferenceValues : public Executor {
 public:
  ReferenceValues(const ir::Graph& graph, const model::Weights& weights, int64_t max_context,
                  const PrecisionPolicy& precision, const ref::Partitioning& partitioning)
      : executor_(graph, weights, max_context, precision, partitioning) {}
  std::span<const float> forward(std::span<const int32_t> tokens, bool last_only) override {
    return executor_.forward(tokens, last_only);
  }
  int64_t max_context() const override { return executor_.max_context(); }
  int64_t vocab_size() const override { return executor_.vocab_size(); }
  void reset() override { executor_.reset(); }

 private:
  ref::ReferenceExecutor executor_;
};

}  // namespace tessera::target
