#include "tessera/sweep/mpi_sweep.hpp"

#include <mpi.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "tessera/base/error.hpp"

namespace tessera::sweep {

namespace {

constexpr int kResultTag = 1;  // worker -> root: a results line ("" for the first request)
constexpr int kPointTag = 2;   // root -> worker: the next point's index, or -1 to stop

// Rank 0: hand out the pending points, append each line that comes back.
void serve(const Spec& spec, ResultsFile& results, int ranks) {
  std::vector<int64_t> pending;
  for (const Point& p : points(spec))
    if (!results.done().contains(p.index)) pending.push_back(p.index);
  size_t next = 0;
  for (int active = ranks - 1; active > 0;) {
    MPI_Status status;
    MPI_Probe(MPI_ANY_SOURCE, kResultTag, MPI_COMM_WORLD, &status);
    int length = 0;
    MPI_Get_count(&status, MPI_CHAR, &length);
    std::string line(static_cast<size_t>(length), '\0');
    MPI_Recv(line.data(), length, MPI_CHAR, status.MPI_SOURCE, kResultTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (!line.empty()) results.append(line);
    int64_t point = -1;
    if (next < pending.size())
      point = pending[next++];
    else
      --active;
    MPI_Send(&point, 1, MPI_INT64_T, status.MPI_SOURCE, kPointTag, MPI_COMM_WORLD);
  }
}

// Other ranks: ask, evaluate, send back, until told to stop.
void work(const Spec& spec) {
  const std::vector<Point> all = points(spec);
  std::string line;
  for (;;) {
    MPI_Send(line.data(), static_cast<int>(line.size()), MPI_CHAR, 0, kResultTag, MPI_COMM_WORLD);
    int64_t point = -1;
    MPI_Recv(&point, 1, MPI_INT64_T, 0, kPointTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (point < 0) return;
    line = evaluate(spec, all.at(static_cast<size_t>(point)));
  }
}

}  // namespace

bool run_over_mpi(const std::function<Spec()>& load, const std::function<std::filesystem::path(const Spec&)>& directory,
                  const std::function<void(const Spec&, const std::filesystem::path&)>& finish) {
  MPI_Init(nullptr, nullptr);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  // Every rank reads the same file, so every rank fails alike; rank 0 reports it.
  std::optional<Spec> spec;
  std::string error;
  try {
    spec = load();
  } catch (const Error& e) {
    error = e.what();
  }
  std::filesystem::path dir;
  std::optional<ResultsFile> results;
  int ok = error.empty() ? 1 : 0;
  if (rank == 0 && ok) {
    try {
      dir = directory(*spec);
      results.emplace(dir / "results.jsonl", *spec);
    } catch (const Error& e) {
      error = e.what(), ok = 0;
    }
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (ok) {
    if (rank == 0) {
      if (ranks == 1)
        run(*spec, *results, 1);
      else
        serve(*spec, *results, ranks);
      results.reset();
      try {
        finish(*spec, dir);
      } catch (const Error& e) {
        error = e.what(), ok = 0;
      }
    } else {
      work(*spec);
    }
  }
  MPI_Finalize();
  if (rank == 0 && !error.empty()) throw Error(error);
  return ok != 0;
}

}  // namespace tessera::sweep
