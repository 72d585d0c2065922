// A sweep over MPI ranks (`mpirun -n N tessera sweep FILE`): rank 0 owns the results file and hands
// out points one at a time to whichever rank asks (dynamic distribution; it is the only writer);
// the other ranks evaluate. The results file is the one a serial run writes, and a rerun resumes
// it the same way. Built only where MPI is found (TESSERA_HAVE_MPI).
#pragma once

#include <filesystem>
#include <functional>

#include "tessera/sweep/sweep.hpp"

namespace tessera::sweep {

// Every rank calls it. `load` reads the spec (on every rank), `directory` makes the output
// directory (rank 0 only), `finish` writes the outputs once every point is in (rank 0 only).
// An Error on rank 0 propagates there; the other ranks return false.
bool run_over_mpi(const std::function<Spec()>& load, const std::function<std::filesystem::path(const Spec&)>& directory,
                  const std::function<void(const Spec&, const std::filesystem::path&)>& finish);

}  // namespace tessera::sweep
