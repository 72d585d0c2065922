// The shared_memory target's training model (gpu_training.cpp).
#pragma once

#include "tessera/target/target.hpp"

namespace tessera::target {

TrainingOutcome simulate_gpu_training(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& work);

}  // namespace tessera::target
