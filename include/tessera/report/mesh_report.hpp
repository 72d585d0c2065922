// Presenting a mesh run: a summary table for people, JSON (schema in docs/metrics.md) for tools.
#pragma once

#include <string>

#include "tessera/program/program.hpp"
#include "tessera/sim/mesh_timing.hpp"

namespace tessera::report {

std::string summary_table(const sim::MeshReport& report);
std::string placement_table(const program::Program& plan);
std::string to_json(const sim::MeshReport& report);
// The timeline in Chrome/Perfetto trace-event JSON (opens in ui.perfetto.dev and chrome://tracing):
// one process per phase, one track per stage plus host I/O; times in simulated microseconds.
std::string trace_json(const sim::MeshReport& report);

}  // namespace tessera::report
