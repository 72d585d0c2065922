#include "tessera/api/sweep.hpp"

#include <cmath>
#include <thread>

#include "tessera/api/catalog.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/report/output_files.hpp"

namespace tessera::api {

namespace {

const sweep::Resolvers& resolvers() {
  static const sweep::Resolvers resolve{.arch = [](const std::string& name) { return resolve_arch(name); },
                                        .model =
                                            [](const std::string& name, system::Workload& work) {
                                              const target::ModelSource m = load_model_source(resolve_model(name));
                                              work.model = m.config, work.model_yaml = m.yaml,
                                              work.model_origin = m.origin;
                                            }};
  return resolve;
}

// What every output of the sweep in `dir` is drawn from.
report::SweepResults results_of(const sweep::Spec& spec, const std::filesystem::path& dir) {
  report::SweepResults r;
  r.spec = &spec;
  r.lines = sweep::read_results(dir / "results.jsonl");
  r.front = sweep::pareto_front(r.lines, spec.objectives);
  for (const auto& ref : spec.references) r.references.push_back(sweep::evaluate_reference(spec, ref));
  return r;
}

}  // namespace

sweep::Spec load_sweep(const std::filesystem::path& spec_file) {
  return sweep::load_spec(read_text_file(spec_file), spec_file.string(), resolvers());
}

std::string sweep_page(const std::filesystem::path& results_or_dir) {
  const std::filesystem::path dir =
      std::filesystem::is_directory(results_or_dir) ? results_or_dir : results_or_dir.parent_path();
  const auto [text, origin] = sweep::spec_of_results(dir / "results.jsonl");
  const sweep::Spec spec = sweep::load_spec(text, origin, resolvers());
  const report::SweepResults r = results_of(spec, dir);
  return report::sweep_html(r, report::sweep_summary(r));
}

std::filesystem::path sweep_directory(const sweep::Spec& spec, const std::filesystem::path& spec_file,
                                      const std::string& out) {
  return report::prepare_output_directory(out.empty() ? "sweep-" + spec.name : out, {spec_file});
}

SweepOutcome run_sweep(const sweep::Spec& spec, const std::filesystem::path& dir, int threads,
                       const std::function<void(int64_t done, int64_t total)>& on_point) {
  int64_t resumed = 0;
  {
    sweep::ResultsFile results(dir / "results.jsonl", spec);
    resumed = static_cast<int64_t>(results.done().size());
    const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    sweep::run(spec, results, n, on_point);
  }
  SweepOutcome outcome = write_sweep_outputs(spec, dir);
  outcome.resumed = resumed;
  return outcome;
}

SweepOutcome write_sweep_outputs(const sweep::Spec& spec, const std::filesystem::path& dir) {
  const report::SweepResults r = results_of(spec, dir);
  SweepOutcome outcome;
  outcome.dir = dir;
  outcome.points = static_cast<int64_t>(r.lines.size());
  outcome.summary = report::sweep_summary(r);
  if (spec.confirm && spec.fidelity != target::Fidelity::Flow) {
    // The front re-timed at the flow tier: how far the cheap tier's objectives were from it.
    const std::vector<sweep::Point> all = sweep::points(spec);
    std::string confirmed;
    for (size_t i : r.front) {
      const std::string flow =
          sweep::evaluate(spec, all.at(static_cast<size_t>(sweep::point_of(r.lines[i]))), target::Fidelity::Flow);
      confirmed += flow + "\n";
      for (const auto& o : spec.objectives) {
        const auto a = sweep::objective_value(r.lines[i], o), f = sweep::objective_value(flow, o);
        if (a && f && *a != 0) outcome.confirm_max_error = std::max(outcome.confirm_max_error, std::fabs(*f / *a - 1));
      }
    }
    report::write_into_output_directory(dir, "confirmed.jsonl", confirmed);
    outcome.summary += fmt::format(
        "The flow tier re-timed the {} front designs (confirmed.jsonl): objectives within {:.1f}% of the analytic "
        "tier's\n",
        r.front.size(), 100 * outcome.confirm_max_error);
  }
  report::write_into_output_directory(dir, "results.csv", report::sweep_csv(r));
  report::write_into_output_directory(dir, "summary.txt", outcome.summary);
  report::write_into_output_directory(dir, "pareto.svg", report::pareto_svg(r, 0, 1));
  report::write_into_output_directory(dir, "pareto.png", report::pareto_png(r, 0, 1));
  report::write_into_output_directory(dir, "parallel.svg", report::parallel_svg(r));
  report::write_into_output_directory(dir, "report.html", report::sweep_html(r, outcome.summary));
  return outcome;
}

}  // namespace tessera::api
