// A matrix product as a kernel of its own on a mesh2d chip (mesh_gemm.cpp): SUMMA, Cannon and
// MeshGEMM on a square grid of cores, timed by the fabric model, values computed core by core.
#pragma once

#include "tessera/target/target.hpp"

namespace tessera::target {

GemmOutcome simulate_mesh_gemm(const arch::ArchSpec& arch, const GemmWork& work);

}  // namespace tessera::target
