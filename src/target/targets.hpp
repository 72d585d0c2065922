// The targets the registry knows; each lives in its fabric's folder (target/<fabric>/).
#pragma once

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
