// The mesh2d target's training model (mesh_training.cpp).
#pragma once

#include "tessera/target/target.hpp"

namespace tessera::target {

TrainingOutcome simulate_wafer_training(const ArchSource& wafer, const ModelSource& model, const TrainingWork& work);

// A training step with values on one wafer, weights resident: the model placed as for inference
// (a region per layer, each matrix tiled over its region's cores) with regions sized to hold every
// weight's gradient and AdamW moments beside it and the layer's saved activations; the sums of
// each product split as its tiles split them. Fails naming the wafer's SRAM when it cannot hold it.
TrainingValues wafer_training_values(const ArchSource& wafer, const ModelSource& model, const TrainingWork& work);

}  // namespace tessera::target
