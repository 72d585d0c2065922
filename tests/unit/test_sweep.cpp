// The area model and design-space sweeps against first principles.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/api/sweep.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/target/arch.hpp"

using namespace tessera;
namespace fs = std::filesystem;

namespace {

arch::ArchSpec preset(const std::string& name) {
  return target::load_arch(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/" + name + ".yaml");
}

fs::path source(const std::string& relative) { return fs::path(TESSERA_SOURCE_DIR) / relative; }

sweep::Spec tiny() { return api::load_sweep(source("tests/data/sweeps/tiny.yaml")); }

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("tessera-test-sweep-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Area, WaferAndGpuPresetsAgainstTheirPublishedDies) {
  // WSE-2 is the one preset whose core breakdown is published (38,000 um2, half SRAM [C3]); its
  // cores cover 70% of the wafer: scribe lines, I/O and spare rows are not modelled.
  const arch::ArchSpec wse2 = preset("wse2");
  const double total = arch::area_of(wse2).total_mm2();
  EXPECT_NEAR(total, 850000 * 0.038, 10.0) << "850,000 cores of 38,000 um2";
  EXPECT_NEAR(total / wse2.area.published_mm2, 0.70, 0.05) << total;
  // WSE-3's core is WSE-2's scaled to N5 (no WSE-3 core area is published): its cores cover about
  // half the wafer, which says its real core is larger (8-wide fp16 SIMD), not that its wafer is.
  const arch::ArchSpec wse3 = preset("wse3");
  EXPECT_NEAR(arch::area_of(wse3).total_mm2() / wse3.area.published_mm2, 0.49, 0.05);
  // The GPU and IPU presets count their die's non-SRAM area per SM or tile (derived from the
  // published die): they must add back up to it.
  for (const std::string name : {"a100", "gc200"}) {
    const arch::ArchSpec a = preset(name);
    EXPECT_NEAR(arch::area_of(a).total_mm2() / a.area.published_mm2, 1.0, 0.01) << name;
  }
  // SRAM is about half a WSE-2 core, as the source says.
  const arch::AreaBreakdown b = arch::area_of(wse2);
  EXPECT_NEAR(b.core_sram_mm2 / b.total_mm2(), 0.5, 0.01);
}

TEST(Area, MalformedAreaKeysAreErrorsThatNameTheKey) {
  const std::string yaml = read_text_file(source("configs/arch/mesh-32x32.yaml"));
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string text = yaml;
    text.replace(text.find(from), from.size(), to);
    return error_of([&] { target::parse_arch(text, "m.yaml"); });
  };
  EXPECT_NE(with("unit_logic: 18403um2", "unit_logic: 18403").find("area.unit_logic"), std::string::npos);
  EXPECT_NE(with("sram_density: 396um2/KiB", "sram_density: 396um2/lb").find("unknown unit"), std::string::npos);
  EXPECT_NE(with("units: 1024", "units: 0").find("area.units"), std::string::npos);
  EXPECT_NE(with("mac_area: {fp16: 75um2, fp32: 297um2}", "mac_area: {fp8_e4m3: 75um2}").find("no fp8_e4m3 MACs"),
            std::string::npos);
  EXPECT_NE(with("leakage: 50mW/mm2", "leakage: 50mW/mm2\n  bogus: 1").find("bogus"), std::string::npos);
}

TEST(Sweep, MoreSramPerCoreAtFixedAreaMeansFewerCores) {
  const sweep::Spec spec = tiny();
  std::map<std::string, int64_t> cores;
  for (const sweep::Point& p : sweep::points(spec)) {
    const sweep::Design d = sweep::design(spec, p);
    EXPECT_LE(arch::area_of(d.arch).total_mm2(), spec.area_mm2 * 1.0001) << p.index;
    EXPECT_GE(arch::area_of(d.arch).total_mm2(), spec.area_mm2 * 0.95) << p.index << ": the budget is filled";
    if (p.values[1].second == "2" && p.values[2].second == "16bit/cycle" && p.values[3].second == "0.85GHz")
      cores[p.values[0].second] = d.arch.usable.cores();
  }
  ASSERT_EQ(cores.size(), 3u);
  EXPECT_GT(cores["32KiB"], cores["48KiB"]);
  EXPECT_GT(cores["48KiB"], cores["64KiB"]);
  // More MACs per core cost area too (Horowitz's adder and multiplier [E1]).
  sweep::Point wide = sweep::points(spec)[0];
  const int64_t narrow_cores = sweep::design(spec, wide).arch.usable.cores();
  wide.values[1].second = "64";
  EXPECT_LT(sweep::design(spec, wide).arch.usable.cores(), narrow_cores);
}

TEST(Sweep, NoDesignBeatsItsPeakAndTheFrontHoldsNoDominatedPoint) {
  const sweep::Spec spec = tiny();
  const fs::path dir = fresh_dir("principles");
  const api::SweepOutcome outcome = api::run_sweep(spec, dir, 2);
  EXPECT_EQ(outcome.points, 48);
  const std::vector<std::string> lines = sweep::read_results(dir / "results.jsonl");
  ASSERT_EQ(lines.size(), 48u);
  int fitted = 0;
  for (const auto& line : lines) {
    const nlohmann::json row = nlohmann::json::parse(line);
    ASSERT_FALSE(row.contains("error")) << line;
    const auto& w = row["workloads"]["decode"];
    if (!w["fits"].get<bool>()) continue;
    ++fitted;
    EXPECT_LE(w["utilization"].get<double>(), 1.0) << line;
    EXPECT_GT(w["tokens_per_s_per_user"].get<double>(), 0) << line;
    EXPECT_GT(w["power_w"].get<double>(), row["design"]["static_power_w"].get<double>()) << line;
  }
  EXPECT_GT(fitted, 30);
  const std::vector<size_t> front = sweep::pareto_front(lines, spec.objectives);
  ASSERT_FALSE(front.empty());
  for (size_t i : front)
    for (size_t j = 0; j < lines.size(); ++j) {
      bool no_worse = true, better = false;
      for (const auto& o : spec.objectives) {
        const auto a = sweep::objective_value(lines[i], o), b = sweep::objective_value(lines[j], o);
        ASSERT_TRUE(a.has_value());
        if (!b) {
          no_worse = false;
          break;
        }
        const double sa = o.maximize ? *a : -*a, sb = o.maximize ? *b : -*b;
        no_worse = no_worse && sb >= sa;
        better = better || sb > sa;
      }
      EXPECT_FALSE(no_worse && better) << "point " << j << " dominates front point " << i;
    }
  // Every point off the front is dominated by one on it.
  EXPECT_LT(front.size(), lines.size());
  // The outputs are written and name the front.
  EXPECT_NE(read_text_file(dir / "results.csv").find(",yes,"), std::string::npos);
  EXPECT_NE(read_text_file(dir / "pareto.svg").find("Pareto front"), std::string::npos);
  EXPECT_NE(read_text_file(dir / "parallel.svg").find("<polyline"), std::string::npos);
  EXPECT_EQ(read_text_file(dir / "pareto.png").substr(1, 3), "PNG");
}

TEST(Sweep, GridRandomAndLatinHypercubePoints) {
  sweep::Spec spec = tiny();
  const auto grid = sweep::points(spec);
  ASSERT_EQ(grid.size(), 3u * 4 * 2 * 2);
  EXPECT_EQ(grid[0].values[1].second, "2");
  EXPECT_EQ(grid[47].values[1].second, "8");
  EXPECT_EQ(grid[2].values[2].second, "32bit/cycle") << "the last parameter varies fastest";
  spec.method = "lhs", spec.samples = 10, spec.seed = 7;
  const auto lhs = sweep::points(spec);
  ASSERT_EQ(lhs.size(), 10u);
  // The ranged parameter (MACs 2..8) gets one sample in each tenth of its range.
  std::vector<int> strata(10, 0);
  for (const auto& p : lhs) {
    const double v = std::stod(p.values[1].second);
    EXPECT_GE(v, 2);
    EXPECT_LE(v, 8);
  }
  spec.parameters[1].integer = false;  // unrounded, to see the strata
  for (const auto& p : sweep::points(spec))
    ++strata[std::min(9, static_cast<int>((std::stod(p.values[1].second) - 2) / 6 * 10))];
  for (int s : strata) EXPECT_EQ(s, 1);
  EXPECT_EQ(sweep::points(spec)[3].values, sweep::points(spec)[3].values) << "seeded: the same points each time";
}

TEST(Sweep, ResultsFileResumesDropsACutLineAndRefusesAnotherSpec) {
  const sweep::Spec spec = tiny();
  const fs::path dir = fresh_dir("resume");
  const fs::path file = dir / "results.jsonl";
  const auto all = sweep::points(spec);
  {
    sweep::ResultsFile results(file, spec);
    results.append(sweep::evaluate(spec, all[0]));
    results.append(sweep::evaluate(spec, all[1]));
  }
  // A killed run leaves half a line.
  {
    std::ofstream out(file, std::ios::app);
    out << sweep::evaluate(spec, all[2]).substr(0, 40);
  }
  {
    sweep::ResultsFile results(file, spec);
    EXPECT_EQ(results.done(), (std::set<int64_t>{0, 1}));
    sweep::run(spec, results, 1);
  }
  const auto lines = sweep::read_results(file);
  ASSERT_EQ(lines.size(), all.size());
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(sweep::point_of(lines[i]), static_cast<int64_t>(i));
  // Another spec's results are never appended to.
  sweep::Spec other = spec;
  other.digest = "0000000000000000";
  EXPECT_NE(error_of([&] { sweep::ResultsFile again(file, other); }).find("another version"), std::string::npos);
  const std::string not_results = (dir / "notes.jsonl").string();
  std::ofstream(not_results) << "my notes\n";
  EXPECT_NE(error_of([&] { sweep::ResultsFile again(not_results, spec); }).find("not a tessera sweep results file"),
            std::string::npos);
  EXPECT_EQ(read_text_file(not_results), "my notes\n");
}

TEST(Sweep, MalformedSpecsNameTheKey) {
  const std::string yaml = read_text_file(source("tests/data/sweeps/tiny.yaml"));
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string text = yaml;
    text.replace(text.find(from), from.size(), to);
    const sweep::Resolvers resolve{.arch = [](const std::string& n) { return source("configs/arch/" + n + ".yaml"); },
                                   .model = [](const std::string&, system::Workload&) {}};
    return error_of([&] { sweep::load_spec(text, "s.yaml", resolve); });
  };
  EXPECT_NE(with("metric: energy_per_token_j", "metric: joy").find("unknown workload metric 'joy'"), std::string::npos);
  EXPECT_NE(with("{from: 2, to: 8, steps: 4}", "{from: 2, to: 8GHz, steps: 4}").find("one unit"), std::string::npos);
  EXPECT_NE(with("fidelity: analytic", "fidelity: perfect").find("unknown fidelity"), std::string::npos);
  EXPECT_NE(with("name: tiny", "name: tiny\ncolour: red").find("colour"), std::string::npos);
  EXPECT_NE(with("{workload: decode, metric: energy_per_token_j", "{workload: prefill, metric: energy_per_token_j")
                .find("no workload named 'prefill'"),
            std::string::npos);
  EXPECT_NE(with("link.bandwidth:", "link.bandwdith:").find("no value of 'link.bandwdith'"), std::string::npos);
  // A value that does not describe a machine is that point's error, kept in the results.
  const sweep::Spec spec = tiny();
  sweep::Point p = sweep::points(spec)[0];
  p.values[0] = {"core.sram", "4KiB"};
  const nlohmann::json row = nlohmann::json::parse(sweep::evaluate(spec, p));
  EXPECT_NE(row.value("error", "").find("reserves all of the core's"), std::string::npos) << row.dump();
}

TEST(Sweep, TrainingWorkloadsAreTimedOnEachDesign) {
  std::string yaml = read_text_file(source("tests/data/sweeps/tiny.yaml"));
  const std::string decode =
      "  - {name: decode, model: default, dtype: fp16, prompt_tokens: 32, generated_tokens: 16}\n";
  yaml.replace(yaml.find(decode), decode.size(),
               decode + "  - {name: train, model: default, training: {seq: 64, global_batch: 4}}\n");
  yaml += "  - {workload: train, metric: tokens_per_s, goal: max}\n";
  const fs::path dir = fresh_dir("training");
  std::ofstream(dir / "spec.yaml") << yaml;
  const sweep::Spec spec = api::load_sweep(dir / "spec.yaml");
  ASSERT_TRUE(spec.workloads[1].training.has_value());
  double slowest = INFINITY, fastest = 0;
  for (const sweep::Point& p : sweep::points(spec)) {
    if (p.values[0].second != "48KiB" || p.values[2].second != "32bit/cycle" || p.values[3].second != "1.1GHz")
      continue;
    const nlohmann::json row = nlohmann::json::parse(sweep::evaluate(spec, p));
    const auto& t = row["workloads"]["train"];
    ASSERT_TRUE(t["fits"].get<bool>()) << row.dump();
    EXPECT_GT(t["step_s"].get<double>(), 0);
    EXPECT_LE(t["mfu"].get<double>(), 1.0);
    EXPECT_NEAR(t["tokens_per_s"].get<double>() * t["step_s"].get<double>(), 4 * 64, 1e-6) << "a step is 4 x 64 tokens";
    slowest = std::min(slowest, t["tokens_per_s"].get<double>());
    fastest = std::max(fastest, t["tokens_per_s"].get<double>());
  }
  EXPECT_GE(fastest, slowest) << "more MACs never train slower";
  // A training workload's metrics are its own.
  std::ofstream(dir / "bad.yaml") << yaml.substr(0, yaml.rfind("  - {workload: train")) +
                                         "  - {workload: train, metric: time_to_first_token_s, goal: min}\n";
  EXPECT_NE(error_of([&] { api::load_sweep(dir / "bad.yaml"); }).find("unknown training metric"), std::string::npos);
}

// An encoder's workload is one pass over its prompt: nothing generated (a generated_tokens key is
// refused by name), its served tokens the prompt tokens the batch processes per second.
TEST(Sweep, EncoderWorkloadsAreOnePass) {
  const fs::path dir = fresh_dir("encoder");
  const std::string spec_text =
      "name: encoder\nbase: h100\nparameters:\n  clock: [1.2GHz, 1.98GHz]\nworkloads:\n"
      "  - {name: encode, model: " +
      source("tests/data/hf/bert").string() +
      ", dtype: fp16, prompt_tokens: 32, batch: 8}\nobjectives:\n"
      "  - {workload: encode, metric: time_to_first_token_s, goal: min}\n"
      "  - {workload: encode, metric: served_tokens_per_s, goal: max}\n";
  std::ofstream(dir / "spec.yaml") << spec_text;
  const sweep::Spec spec = api::load_sweep(dir / "spec.yaml");
  ASSERT_EQ(spec.workloads[0].work.max_new_tokens, 0);
  double slow = 0, fast = 0;
  for (const sweep::Point& p : sweep::points(spec)) {
    const nlohmann::json row = nlohmann::json::parse(sweep::evaluate(spec, p));
    const auto& w = row["workloads"]["encode"];
    ASSERT_TRUE(w["fits"].get<bool>()) << row.dump();
    EXPECT_NEAR(w["served_tokens_per_s"].get<double>() * w["time_to_first_token_s"].get<double>(), 8 * 32, 1e-6)
        << "one batch of 8 x 32 tokens per pass";
    (p.values[0].second == "1.2GHz" ? slow : fast) = w["time_to_first_token_s"].get<double>();
  }
  EXPECT_LT(fast, slow) << "a faster clock makes the pass shorter";
  std::ofstream(dir / "bad.yaml") << spec_text.substr(0, spec_text.find(", batch: 8}")) +
                                         ", batch: 8, generated_tokens: 4}\n" +
                                         spec_text.substr(spec_text.find("objectives:"));
  EXPECT_NE(error_of([&] { api::load_sweep(dir / "bad.yaml"); }).find("is an encoder: it generates nothing"),
            std::string::npos);
}
