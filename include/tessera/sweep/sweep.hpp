// Design-space sweeps: one base arch, parameters over its keys, workloads and objectives
// (docs/sweep.md). A sweep is a list of design points (a grid, or seeded random / Latin-hypercube
// samples); each point is one arch description (the base with the point's values, resized to the
// area budget where there is one) evaluated on every workload by system::evaluate. Results are
// JSON lines appended to a file that a rerun resumes.
//
// A sweep file (strict YAML):
//   name: wafer-real-estate
//   base: wse2                          # a preset or an arch file
//   parameters:                         # dotted arch keys -> a list, or {from, to, steps}
//     core.sram: [24KiB, 48KiB, 96KiB]
//     clock: {from: 0.85GHz, to: 1.1GHz, steps: 3}
//     chips: [1, 2]                     # the system's chip count (not an arch key)
//   constraints: {area: 46225mm2, power: 25kW}   # optional; area resizes each design's cores
//   search: {method: grid}              # grid, random or lhs (with samples and seed)
//   fidelity: analytic                  # analytic or flow (mesh fabrics); confirm: true re-times
//   confirm: true                       #   the Pareto front at the flow tier
//   workloads:
//     - {name: decode, model: llama3-8b, dtype: fp16, prompt_tokens: 128, generated_tokens: 128}
//     - {name: int4, model: llama3-8b, dtype: fp16, weights: int4, kv: fp8_e4m3}   # a precision policy
//     - {name: train, model: gpt2-xl, training: {seq: 1024, global_batch: 16}}
//   references: [wse2, wse3]            # optional: presets placed among the designs as shipped
//   objectives:
//     - {workload: decode, metric: tokens_per_s_per_user, goal: max}
//     - {metric: area_mm2, goal: min}   # a design metric (no workload)
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tessera/system/system.hpp"
#include "tessera/target/training.hpp"

namespace tessera::sweep {

// Per inference workload: from system::Result, and derived with the design's area and power.
inline const std::vector<std::string> kWorkloadMetrics = {
    "tokens_per_s_per_user", "tokens_per_s",       "served_tokens_per_s",
    "time_to_first_token_s", "energy_per_token_j", "power_w",
    "tokens_per_s_per_mm2",  "tokens_per_s_per_w", "utilization"};
// Per training workload (one optimizer step, timing-only): from target::TrainingReport and the design.
inline const std::vector<std::string> kTrainingMetrics = {
    "step_s", "tokens_per_s", "mfu", "energy_per_step_j", "power_w", "tokens_per_s_per_mm2", "tokens_per_s_per_w"};
// Per design.
inline const std::vector<std::string> kDesignMetrics = {"area_mm2", "cores", "static_power_w", "peak_tmacs"};

struct Parameter {
  std::string key;                  // a dotted arch key, or "chips"
  std::vector<std::string> values;  // a grid's values (a list, or a range's steps)
  // A range {from, to, steps}: random and Latin-hypercube samples draw anywhere in it.
  std::optional<std::pair<double, double>> range;
  std::string unit;  // of the range's numbers ("GHz", "KiB", "" for plain numbers)
  bool integer = false;
};

struct SweepWorkload {
  std::string name;
  system::Workload work;  // the model, and an inference request's shape
  // A training step instead of inference (`training: {seq, global_batch, micro_batch, recompute}`).
  std::optional<target::TrainingWork> training;
};

struct Objective {
  std::string workload;  // empty: a design metric
  std::string metric;
  bool maximize = true;
  std::string label() const { return workload.empty() ? metric : workload + "." + metric; }
};

struct Spec {
  std::string name;
  std::string base_yaml, base_origin;
  std::vector<Parameter> parameters;
  double area_mm2 = 0;  // 0: designs keep their size
  double power_w = 0;   // 0: no cap
  std::string method = "grid";
  int64_t samples = 0;
  uint64_t seed = 0;
  target::Fidelity fidelity = target::Fidelity::Analytic;
  bool confirm = false;
  std::vector<SweepWorkload> workloads;
  std::vector<Objective> objectives;
  std::string digest;        // of the file's text: a results file belongs to one spec
  std::string text, origin;  // the file's text (kept in the results header) and where it was read
  // Machines evaluated as they ship, to place them among the designs (`references: [wse2, wse3]`).
  struct Reference {
    std::string name, yaml, origin;
  };
  std::vector<Reference> references;
};

// Resolves a preset name or arch file to a path, and a model name or config to a workload's model.
struct Resolvers {
  std::function<std::filesystem::path(const std::string&)> arch;
  std::function<void(const std::string& name_or_path, system::Workload&)> model;
};

// Throws Error naming the file, line and key of anything malformed or unknown.
Spec load_spec(const std::string& yaml_text, const std::string& origin, const Resolvers& resolve);

struct Point {
  int64_t index = 0;
  std::vector<std::pair<std::string, std::string>> values;  // parameter key -> value, in spec order
};

// Every point of the sweep, in a fixed order (the same for the same spec).
std::vector<Point> points(const Spec& spec);

// The point's arch description and chip count: the base with its values set, resized to the
// area budget. Throws Error when the values do not describe a machine.
struct Design {
  std::string yaml;
  arch::ArchSpec arch;
  int64_t chips = 1;
};
Design design(const Spec& spec, const Point& point);

// One results line (JSON, no newline): the point, its design metrics and each workload's metrics,
// or why it does not fit (the resource) or is not a machine (the error). Never throws for a bad
// design; the fidelity is the spec's unless given.
std::string evaluate(const Spec& spec, const Point& point, std::optional<target::Fidelity> fidelity = {});
// A reference machine's line ("reference": its name, no point), on the same workloads.
std::string evaluate_reference(const Spec& spec, const Spec::Reference& reference);

// The results file of a sweep: the spec's header line, then one line per finished point. Opening
// an existing file resumes it: a line cut short by a killed run is dropped, a header of another
// spec is an error (nothing is overwritten).
class ResultsFile {
 public:
  ResultsFile(const std::filesystem::path& path, const Spec& spec);
  ~ResultsFile();
  ResultsFile(const ResultsFile&) = delete;
  ResultsFile& operator=(const ResultsFile&) = delete;
  const std::set<int64_t>& done() const { return done_; }
  // Appends one line and flushes it to the operating system (it survives the process being killed).
  void append(const std::string& line);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::set<int64_t> done_;
};

// The sweep file's text and origin kept in a results file's header (`tessera report` rebuilds the
// sweep's page from them). Throws Error if `path` is not a results file.
std::pair<std::string, std::string> spec_of_results(const std::filesystem::path& path);
// The point index of a results line.
int64_t point_of(const std::string& line);
// The points of `path` (header skipped), by point index.
std::vector<std::string> read_results(const std::filesystem::path& path);

// Whether this process was started by an MPI launcher (OpenMPI's mpirun, or a PMI/PMIx one):
// then `tessera sweep` distributes its points (sweep/mpi_sweep.hpp).
bool launched_by_mpi();

// Runs every point not yet in the results file, `threads` at a time; `on_point` after each.
void run(const Spec& spec, ResultsFile& results, int threads,
         const std::function<void(int64_t done, int64_t total)>& on_point = {});

// The value of an objective in a results line; nullopt when the point has none (does not fit).
std::optional<double> objective_value(const std::string& line, const Objective& objective);
// Indices (into `lines`) of the points no other point dominates on every objective.
std::vector<size_t> pareto_front(const std::vector<std::string>& lines, const std::vector<Objective>& objectives);

}  // namespace tessera::sweep
