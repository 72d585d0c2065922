// The mesh2d target's training model (mesh_training.cpp).
#pragma once

#include "tessera/target/target.hpp"

namespace tessera::target {

TrainingOutcome simulate_wafer_training(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& work);

// A training step with values on one wafer, laid out as `plan` (the inference placement of the
// model: a region per layer, each matrix tiled over its region's cores) with every weight's
// gradient and AdamW moments beside it in the core's SRAM, and the layer's saved activations
// spread over its region. Fails naming the stage whose cores overflow.
TrainingValues wafer_training_values(const arch::ArchSpec& arch, const program::Program& plan, const ModelSource& model,
                                     const TrainingWork& work);

}  // namespace tessera::target
