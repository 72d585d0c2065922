// Each target's part of the arch description (arch::FabricSection), for target/arch.hpp.
#pragma once

#include "tessera/arch/arch_spec.hpp"

namespace tessera::target {

const arch::FabricSection& mesh2d_section();
const arch::FabricSection& exchange_section();
const arch::FabricSection& shared_memory_section();

}  // namespace tessera::target
