#include "tessera/ir/builders.hpp"
#include "training_common.hpp"

namespace tessera::target {

TrainingOutcome Target::simulate_training(const ModelSource&, const TrainingWork&) const {
  fail("training on {} ({} fabric) has no timing model yet; GPU-like (shared_memory) and wafer (mesh2d) presets have",
       arch().name, arch().fabric);
}

CostedModel costed_model(const ModelSource& model, const TrainingWork& work) {
  if (work.seq < 1 || work.seq > model.config.context_length)
    fail("--seq {}: {} takes sequences of 1 to {} tokens", work.seq, model.config.name, model.config.context_length);
  const ir::Graph graph = model.graph ? *model.graph : ir::build_model_graph(model.config);
  ir::TrainingOptions options;
  options.recompute = work.recompute;
  CostedModel m{ir::build_training_graph(graph, options), {}};
  m.cost = compiler::training_cost(m.graph, work.seq);
  return m;
}

}  // namespace tessera::target
