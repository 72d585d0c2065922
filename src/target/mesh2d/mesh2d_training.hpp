// The mesh2d target's training model (mesh_training.cpp).
#pragma once

#include "tessera/target/target.hpp"

namespace tessera::target {

TrainingOutcome simulate_wafer_training(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& work);

}  // namespace tessera::target
