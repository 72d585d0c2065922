// The exchange target's training model (ipu_training.cpp).
#pragma once

#include "tessera/target/target.hpp"

namespace tessera::target {

TrainingOutcome simulate_ipu_training(const arch::ArchSpec& arch, const ModelSource& model, const TrainingWork& work);

}  // namespace tessera::target
