#include "tessera/sweep/sweep.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "tessera/arch/units.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/config/yaml_reader.hpp"
#include "tessera/target/arch.hpp"
#include "tessera/target/registry.hpp"

namespace tessera::sweep {

namespace {

using config::YamlMap;
using nlohmann::json;

constexpr int kResultsVersion = 1;

// FNV-1a over the spec's text, as hex: a results file names the spec it was written for.
std::string digest_of(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", h);
}

// "0.85GHz" -> {0.85, "GHz"}; "8" -> {8, ""}.
std::pair<double, std::string> number_and_unit(const std::string& text, const std::string& where) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || !std::isfinite(value))
    fail("{}: expected a number, optionally with a unit (0.85GHz, 48KiB, 8), got '{}'", where, text);
  return {value, std::string(end, text.data() + text.size())};
}

std::string format_value(double v, const std::string& unit, bool integer) {
  if (integer) return fmt::format("{}{}", std::llround(v), unit);
  return fmt::format("{:.6g}{}", v, unit);
}

Parameter parse_parameter(const YamlMap& params, const std::string& key) {
  Parameter p;
  p.key = key;
  if (params.is_map(key)) {
    const YamlMap r = params.map(key);
    const auto [from, unit] = number_and_unit(r.string("from"), r.where("from"));
    const auto [to, to_unit] = number_and_unit(r.string("to"), r.where("to"));
    if (to_unit != unit) fail("{}: 'from' is in '{}' and 'to' in '{}'; use one unit", params.where(key), unit, to_unit);
    const int64_t steps = r.integer("steps");
    if (steps < 1 || steps > 10000) fail("{}: must be 1..10000", r.where("steps"));
    r.finish();
    // Plain whole numbers (MACs per cycle, chips) stay whole.
    p.integer = unit.empty() && from == std::floor(from) && to == std::floor(to);
    p.range = {from, to};
    p.unit = unit;
    for (int64_t i = 0; i < steps; ++i) {
      const double t = steps == 1 ? 0.0 : static_cast<double>(i) / static_cast<double>(steps - 1);
      p.values.push_back(format_value(from + t * (to - from), unit, p.integer));
    }
  } else {
    p.values = params.strings(key);
    if (p.values.empty()) fail("{}: give at least one value", params.where(key));
  }
  if (key == "chips")
    for (const auto& v : p.values) {
      const auto [n, unit] = number_and_unit(v, params.where(key));
      if (!unit.empty() || n < 1 || n != std::floor(n))
        fail("{}: chips must be whole numbers >= 1, got '{}'", params.where(key), v);
    }
  return p;
}

bool known_metric(const std::string& metric, const std::vector<std::string>& list) {
  return std::find(list.begin(), list.end(), metric) != list.end();
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

Spec load_spec(const std::string& yaml_text, const std::string& origin, const Resolvers& resolve) {
  const YamlMap root = YamlMap::parse_string(yaml_text, origin);
  Spec s;
  s.digest = digest_of(yaml_text);
  s.text = yaml_text, s.origin = origin;
  s.name = root.string("name");
  const std::filesystem::path base = resolve.arch(root.string("base"));
  s.base_yaml = read_text_file(base);
  s.base_origin = base.string();
  target::parse_arch(s.base_yaml, s.base_origin);  // the base itself must be a machine

  const YamlMap params = root.map("parameters");
  for (const std::string& key : params.keys()) {
    s.parameters.push_back(parse_parameter(params, key));
    if (key == "chips") continue;
    // A key no value of which describes a machine (a typo, a key of another fabric) is the spec's
    // error; a value that fails alone is that point's, kept in the results.
    std::string why;
    const auto& values = s.parameters.back().values;
    const size_t tried = std::min<size_t>(values.size(), 16);
    for (size_t i = 0; i < tried && (i == 0 || !why.empty()); ++i) {
      try {
        const std::string edited = fmt::format("{} with {} = {}", s.base_origin, key, values[i]);
        target::parse_arch(config::with_values(s.base_yaml, edited, {{key, values[i]}}), edited);
        why.clear();
      } catch (const Error& e) {
        why = e.what();
      }
    }
    if (!why.empty())
      fail("{}: no value of '{}' gives {} a description it accepts: {}", params.where(key), key, s.base_origin, why);
  }
  params.finish();
  if (s.parameters.empty()) fail("{}: give at least one parameter", root.where("parameters"));

  if (root.has("constraints")) {
    const YamlMap c = root.map("constraints");
    if (c.has("area")) s.area_mm2 = arch::parse_area_mm2(c.string("area"), c.where("area"));
    if (c.has("power")) s.power_w = arch::parse_watts(c.string("power"), c.where("power"));
    c.finish();
    if (s.area_mm2 > 0 && !target::parse_arch(s.base_yaml, s.base_origin).area.described)
      fail("{}: an area budget needs the base arch's `area` section, which {} does not have", root.where("constraints"),
           s.base_origin);
  }

  if (root.has("search")) {
    const YamlMap search = root.map("search");
    s.method = search.string("method");
    if (s.method != "grid" && s.method != "random" && s.method != "lhs")
      fail("{}: unknown method '{}'; use grid, random or lhs", search.where("method"), s.method);
    if (s.method != "grid") {
      s.samples = search.integer("samples");
      if (s.samples < 1 || s.samples > 1000000) fail("{}: must be 1..1000000", search.where("samples"));
      s.seed = static_cast<uint64_t>(search.optional_integer("seed").value_or(0));
    }
    search.finish();
  }
  if (s.method == "grid") {
    double total = 1;
    for (const auto& p : s.parameters) total *= static_cast<double>(p.values.size());
    if (total > 1e6)
      fail("{}: the grid has {:.0f} points (at most 1,000,000); sample it with search: {{method: lhs, samples: N}}",
           root.where("parameters"), total);
  }

  if (root.has("fidelity")) {
    const std::string f = root.string("fidelity");
    if (f == "analytic")
      s.fidelity = target::Fidelity::Analytic;
    else if (f == "flow")
      s.fidelity = target::Fidelity::Flow;
    else
      fail("{}: unknown fidelity '{}'; use analytic or flow", root.where("fidelity"), f);
  }
  s.confirm = root.optional_boolean("confirm").value_or(false);
  if (root.has("references"))
    for (const std::string& name : root.strings("references")) {
      const std::filesystem::path file = resolve.arch(name);
      Spec::Reference r{name, read_text_file(file), file.string()};
      target::parse_arch(r.yaml, r.origin);
      s.references.push_back(std::move(r));
    }

  for (const YamlMap& w : root.maps("workloads")) {
    SweepWorkload sw;
    sw.name = w.string("name");
    for (const auto& other : s.workloads)
      if (other.name == sw.name) fail("{}: two workloads named '{}'", w.where("name"), sw.name);
    if (w.has("training") && (w.has("prompt_tokens") || w.has("generated_tokens") || w.has("batch")))
      fail("{}: a training workload takes its shape from `training`, not prompt_tokens, generated_tokens or batch",
           w.where("training"));
    resolve.model(w.string("model"), sw.work);
    // `dtype` for everything, then the weights, KV cache or pruning of a precision policy over it.
    sw.work.precision = PrecisionPolicy::uniform(w.optional_string("dtype").value_or("fp16"));
    if (w.has("weights")) sw.work.precision.weights = w.string("weights");
    if (w.has("kv")) sw.work.precision.kv = w.string("kv");
    if (w.has("prune")) sw.work.precision.prune = w.string("prune");
    try {
      sw.work.precision.validate();
    } catch (const Error& e) {
      fail("{}: {}", w.where("name"), e.what());
    }
    if (w.has("training")) {
      const YamlMap t = w.map("training");
      target::TrainingWork tw;
      tw.seq = t.optional_integer("seq").value_or(1024);
      tw.global_batch = t.optional_integer("global_batch").value_or(0);
      tw.micro_batch = t.optional_integer("micro_batch").value_or(0);
      tw.recompute = ir::parse_recompute(t.optional_string("recompute").value_or("selective"));
      if (tw.seq < 1 || tw.global_batch < 0 || tw.micro_batch < 0)
        fail("{}: seq must be >= 1, global_batch and micro_batch >= 0 (micro_batch 0: the fastest that fits)",
             w.where("training"));
      t.finish();
      sw.training = tw;
    }
    sw.work.prompt_tokens = w.optional_integer("prompt_tokens").value_or(128);
    sw.work.max_new_tokens = w.optional_integer("generated_tokens").value_or(128);
    sw.work.batch = w.optional_integer("batch").value_or(1);
    if (sw.work.prompt_tokens < 1 || sw.work.max_new_tokens < 1 || sw.work.batch < 1)
      fail("{}: prompt_tokens, generated_tokens and batch must be >= 1", w.where("name"));
    if (sw.work.model.is_encoder() && w.has("generated_tokens"))
      fail("{}: '{}' is an encoder: it generates nothing (its workload is one pass over prompt_tokens)",
           w.where("generated_tokens"), sw.work.model.name);
    sw.work.max_new_tokens = sw.work.model.tokens_to_generate(sw.work.max_new_tokens);
    w.finish();
    s.workloads.push_back(std::move(sw));
  }
  if (s.workloads.empty()) fail("{}: give at least one workload", root.where("workloads"));

  for (const YamlMap& o : root.maps("objectives")) {
    Objective obj;
    obj.workload = o.optional_string("workload").value_or("");
    obj.metric = o.string("metric");
    const std::string goal = o.string("goal");
    if (goal != "max" && goal != "min") fail("{}: goal is max or min, got '{}'", o.where("goal"), goal);
    obj.maximize = goal == "max";
    if (obj.workload.empty()) {
      if (!known_metric(obj.metric, kDesignMetrics))
        fail("{}: unknown design metric '{}'; known: {} (or name a workload for {})", o.where("metric"), obj.metric,
             joined(kDesignMetrics), joined(kWorkloadMetrics));
    } else {
      const auto w = std::find_if(s.workloads.begin(), s.workloads.end(),
                                  [&](const auto& candidate) { return candidate.name == obj.workload; });
      if (w == s.workloads.end()) fail("{}: no workload named '{}'", o.where("workload"), obj.workload);
      const std::vector<std::string>& metrics = w->training ? kTrainingMetrics : kWorkloadMetrics;
      if (!known_metric(obj.metric, metrics))
        fail("{}: unknown {} metric '{}'; known: {}", o.where("metric"), w->training ? "training" : "workload",
             obj.metric, joined(metrics));
    }
    o.finish();
    s.objectives.push_back(obj);
  }
  if (s.objectives.size() < 2) fail("{}: give at least two objectives (a trade-off)", root.where("objectives"));
  root.finish();
  return s;
}

std::vector<Point> points(const Spec& spec) {
  std::vector<Point> out;
  const auto& params = spec.parameters;
  if (spec.method == "grid") {
    std::vector<size_t> at(params.size(), 0);
    for (int64_t index = 0;; ++index) {
      Point p{index, {}};
      for (size_t i = 0; i < params.size(); ++i) p.values.emplace_back(params[i].key, params[i].values[at[i]]);
      out.push_back(std::move(p));
      size_t i = params.size();
      while (i > 0 && ++at[i - 1] == params[i - 1].values.size()) at[--i] = 0;
      if (i == 0) break;
    }
    return out;
  }
  // Random: each parameter uniformly in its range (or among its values). Latin hypercube: each
  // parameter's range cut into `samples` strata, one sample in each, strata shuffled per parameter.
  std::mt19937_64 rng(spec.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const auto n = static_cast<size_t>(spec.samples);
  std::vector<std::vector<double>> u(params.size(), std::vector<double>(n));
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<size_t> strata(n);
    for (size_t k = 0; k < n; ++k) strata[k] = k;
    if (spec.method == "lhs") std::shuffle(strata.begin(), strata.end(), rng);
    for (size_t k = 0; k < n; ++k)
      u[i][k] =
          spec.method == "lhs" ? (static_cast<double>(strata[k]) + unit(rng)) / static_cast<double>(n) : unit(rng);
  }
  for (size_t k = 0; k < n; ++k) {
    Point p{static_cast<int64_t>(k), {}};
    for (size_t i = 0; i < params.size(); ++i) {
      const Parameter& par = params[i];
      if (par.range) {
        const double v = par.range->first + u[i][k] * (par.range->second - par.range->first);
        p.values.emplace_back(par.key, format_value(v, par.unit, par.integer));
      } else {
        const auto pick =
            std::min(par.values.size() - 1, static_cast<size_t>(u[i][k] * static_cast<double>(par.values.size())));
        p.values.emplace_back(par.key, par.values[pick]);
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

Design design(const Spec& spec, const Point& point) {
  Design d;
  std::vector<std::pair<std::string, std::string>> edits;
  for (const auto& [key, value] : point.values) {
    if (key == "chips")
      d.chips = std::stoll(value);
    else
      edits.emplace_back(key, value);
  }
  const std::string origin = fmt::format("{} point {}", spec.name, point.index);
  d.yaml = config::with_values(spec.base_yaml, origin, edits);
  d.arch = target::parse_arch(d.yaml, origin);
  if (spec.area_mm2 > 0) {
    // As many cores as the budget holds beside the die's shared SRAM and fixed blocks.
    const arch::AreaBreakdown b = arch::area_of(d.arch);
    const double per_core = arch::unit_area_mm2(d.arch);
    const double room = spec.area_mm2 - b.shared_sram_mm2 - b.fixed_mm2;
    const auto units = static_cast<int64_t>(std::floor(room / per_core));
    if (units < 1)
      fail("an area of {:.0f} mm2 holds no core of {:.4f} mm2 beside {:.1f} mm2 of shared SRAM and fixed blocks",
           spec.area_mm2, per_core, b.shared_sram_mm2 + b.fixed_mm2);
    const double scale = static_cast<double>(units) / static_cast<double>(d.arch.area.units);
    const auto before = static_cast<double>(d.arch.grid_width * d.arch.grid_height);
    const auto die_units = static_cast<double>(d.arch.area.units);
    for (const auto& [key, value] : target::resized(d.arch, scale)) edits.emplace_back(key, value);
    d.yaml = config::with_values(spec.base_yaml, origin, edits);
    d.arch = target::parse_arch(d.yaml, origin);
    // The die keeps its share of cores programs do not see (a wafer's spares and host support);
    // the fabric's rounding of its shape may not add cores beyond the budget.
    const auto after = static_cast<double>(d.arch.grid_width * d.arch.grid_height);
    edits.emplace_back("area.units",
                       std::to_string(std::min(units, static_cast<int64_t>(std::floor(die_units * after / before)))));
    d.yaml = config::with_values(spec.base_yaml, origin, edits);
    d.arch = target::parse_arch(d.yaml, origin);
  }
  return d;
}

namespace {

// The design's metrics and each workload's into `line`.
void evaluate_design(const Spec& spec, const Design& d, const std::string& origin, target::Fidelity fidelity,
                     json& line) {
  line["fidelity"] = fidelity == target::Fidelity::Analytic ? "analytic" : "flow";
  const auto chips = static_cast<double>(d.chips);
  const double area = d.arch.area.described ? arch::area_of(d.arch).total_mm2() * chips : 0;
  const double static_w = area * d.arch.area.leakage_w_per_mm2;
  const std::string mac =
      d.arch.core.macs_per_cycle.contains("fp16") ? "fp16" : d.arch.core.macs_per_cycle.begin()->first;
  line["design"] = {{"area_mm2", area},
                    {"cores", d.arch.usable.cores() * d.chips},
                    {"static_power_w", static_w},
                    {"peak_tmacs", d.arch.peak_macs_per_second(mac) * chips / 1e12}};
  const system::Machine machine{d.arch, d.yaml, origin, d.chips};
  bool over_power = false;
  // Power (static, plus the dynamic power of producing `tokens_per_s`) and throughput per mm2 and W.
  const auto add_power = [&](json& out, double tokens_per_s, double dynamic_w) {
    const double power = static_w + (std::isfinite(dynamic_w) ? dynamic_w : 0.0);
    over_power = over_power || (spec.power_w > 0 && power > spec.power_w);
    out["power_w"] = power;
    if (!std::isfinite(tokens_per_s)) return;
    if (area > 0) out["tokens_per_s_per_mm2"] = tokens_per_s / area;
    if (power > 0) out["tokens_per_s_per_w"] = tokens_per_s / power;
  };
  std::unique_ptr<target::Target> chip;  // made once, for training workloads
  for (const SweepWorkload& w : spec.workloads) {
    if (w.training) {
      if (!chip) chip = target::make_target({d.arch, d.yaml, origin});
      target::TrainingWork tw = *w.training;
      tw.chips = d.chips;
      const target::TrainingOutcome t =
          chip->simulate_training({w.work.model, w.work.model_yaml, w.work.model_origin, nullptr}, tw);
      json out;
      out["fits"] = static_cast<bool>(t.status);
      if (!t.status) {
        out["note"] = t.status.message();
        out["resource"] = t.status.failure().resource;
      } else {
        const target::TrainingReport& r = t.report;
        out["mapping"] = r.layout, out["bound"] = r.bound;
        out["step_s"] = r.step_s, out["tokens_per_s"] = r.tokens_per_s, out["mfu"] = r.mfu;
        out["energy_per_step_j"] = r.energy_per_step_j;
        add_power(out, r.tokens_per_s, r.energy_per_step_j / r.step_s);
      }
      line["workloads"][w.name] = out;
      continue;
    }
    system::Workload work = w.work;
    work.fidelity = fidelity;
    const system::Result r = system::evaluate(machine, work);
    json out;
    out["fits"] = r.fits;
    if (!r.fits) {
      out["note"] = r.note;
      if (r.fit_failure) out["resource"] = r.fit_failure->resource;
    } else {
      out["mapping"] = r.mapping;
      out["bound"] = r.bound;
      // A metric the workload has no finite value for (tokens/s of a prefill-only request) is left out.
      const auto put = [&](const char* key, double v) {
        if (std::isfinite(v)) out[key] = v;
      };
      put("tokens_per_s_per_user", r.tokens_per_s_per_user);
      put("tokens_per_s", r.tokens_per_s);
      put("served_tokens_per_s", r.served_tokens_per_s);
      put("time_to_first_token_s", r.time_to_first_token_s);
      put("energy_per_token_j", r.energy_per_token_j);
      put("utilization", r.utilization);
      // A prefill-only request produces no tokens per second: its power is the static power.
      add_power(out, r.tokens_per_s, r.energy_per_token_j * r.tokens_per_s);
    }
    line["workloads"][w.name] = out;
  }
  line["over_power"] = over_power;
}

}  // namespace

std::string evaluate(const Spec& spec, const Point& point, std::optional<target::Fidelity> fidelity) {
  json line;
  line["point"] = point.index;
  json values = json::object();
  for (const auto& [key, value] : point.values) values[key] = value;
  line["values"] = values;
  try {
    evaluate_design(spec, design(spec, point), fmt::format("{} point {}", spec.name, point.index),
                    fidelity.value_or(spec.fidelity), line);
  } catch (const Error& e) {
    line["error"] = e.what();
  }
  return line.dump();
}

std::string evaluate_reference(const Spec& spec, const Spec::Reference& reference) {
  json line;
  line["reference"] = reference.name;
  Design d{reference.yaml, target::parse_arch(reference.yaml, reference.origin), 1};
  evaluate_design(spec, d, reference.origin, spec.fidelity, line);
  return line.dump();
}

ResultsFile::ResultsFile(const std::filesystem::path& path, const Spec& spec) : path_(path) {
  const json header = {{"tessera_sweep", kResultsVersion},
                       {"name", spec.name},
                       {"spec", spec.digest},
                       {"spec_file", spec.origin},
                       {"spec_text", spec.text}};
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    std::string text = read_text_file(path);
    // A line without its newline was cut short by a killed run: drop it (its point runs again).
    const size_t complete = text.empty() || text.back() == '\n' ? text.size() : text.rfind('\n') + 1;
    if (complete == std::string::npos + 1 || complete == 0) {
      text.clear();
    } else {
      text.resize(complete);
    }
    if (!text.empty()) {
      const size_t first_end = text.find('\n');
      const json first = json::parse(text.substr(0, first_end), nullptr, false);
      if (first.is_discarded() || !first.contains("tessera_sweep"))
        fail("{}: is not a tessera sweep results file; give another --out (nothing was overwritten)", path.string());
      if (first.value("spec", "") != spec.digest)
        fail(
            "{}: holds results of another version of sweep '{}' (the spec file changed); give another --out "
            "(nothing was overwritten)",
            path.string(), first.value("name", "?"));
      for (size_t at = first_end + 1; at < text.size();) {
        const size_t end = text.find('\n', at);
        const json row = json::parse(text.substr(at, end - at), nullptr, false);
        if (row.is_discarded() || !row.contains("point"))
          fail("{}: line {} is not a results line; the file is damaged (give another --out)", path.string(),
               std::count(text.begin(), text.begin() + static_cast<long>(at), '\n') + 1);
        done_.insert(row["point"].get<int64_t>());
        at = end + 1;
      }
    }
    if (::truncate(path.c_str(), static_cast<off_t>(text.size())) != 0)
      fail("{}: cannot drop the unfinished last line", path.string());
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND);
    if (fd_ < 0) fail("{}: cannot append to it", path.string());
    if (text.empty()) append(header.dump());
  } else {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL, 0644);
    if (fd_ < 0) fail("{}: cannot create it", path.string());
    append(header.dump());
  }
}

ResultsFile::~ResultsFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ResultsFile::append(const std::string& line) {
  const std::string text = line + "\n";
  // One write per line: a kill leaves whole lines and at most one cut line, which a resume drops.
  for (size_t written = 0; written < text.size();) {
    const ssize_t n = ::write(fd_, text.data() + written, text.size() - written);
    if (n < 0) fail("{}: write failed", path_.string());
    written += static_cast<size_t>(n);
  }
  const json row = json::parse(line, nullptr, false);
  if (!row.is_discarded() && row.contains("point")) done_.insert(row["point"].get<int64_t>());
}

std::pair<std::string, std::string> spec_of_results(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  const json header = json::parse(text.substr(0, text.find('\n')), nullptr, false);
  if (header.is_discarded() || !header.is_object() || !header.contains("tessera_sweep") ||
      !header["spec_text"].is_string() || !header["spec_file"].is_string())
    fail("{}: not a tessera sweep results file (`tessera sweep FILE -o DIR` writes DIR/results.jsonl)", path.string());
  return {header["spec_text"].get<std::string>(), header["spec_file"].get<std::string>()};
}

int64_t point_of(const std::string& line) { return json::parse(line).at("point").get<int64_t>(); }

std::vector<std::string> read_results(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  std::vector<std::string> out;
  for (size_t at = text.find('\n'); at != std::string::npos && at + 1 < text.size();) {
    const size_t end = text.find('\n', at + 1);
    if (end == std::string::npos) break;  // a cut line
    out.push_back(text.substr(at + 1, end - at - 1));
    at = end;
  }
  std::vector<std::pair<int64_t, std::string>> keyed;
  for (auto& line : out) keyed.emplace_back(point_of(line), std::move(line));
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  out.clear();
  for (auto& [_, line] : keyed) out.push_back(std::move(line));
  return out;
}

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

void run(const Spec& spec, ResultsFile& results, int threads,
         const std::function<void(int64_t done, int64_t total)>& on_point) {
  std::vector<Point> pending;
  const std::vector<Point> all = points(spec);
  for (const Point& p : all)
    if (!results.done().contains(p.index)) pending.push_back(p);
  std::atomic<size_t> next{0};
  std::mutex mutex;
  int64_t finished = static_cast<int64_t>(all.size() - pending.size());
  auto worker = [&] {
    for (size_t i = next++; i < pending.size(); i = next++) {
      const std::string line = evaluate(spec, pending[i]);
      const std::lock_guard lock(mutex);
      results.append(line);
      ++finished;
      if (on_point) on_point(finished, static_cast<int64_t>(all.size()));
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

std::optional<double> objective_value(const std::string& line, const Objective& objective) {
  const json row = json::parse(line, nullptr, false);
  if (row.is_discarded() || row.contains("error")) return std::nullopt;
  const json& from = objective.workload.empty() ? row["design"] : row["workloads"][objective.workload];
  if (!objective.workload.empty() && !from.value("fits", false)) return std::nullopt;
  if (!from.contains(objective.metric) || !from[objective.metric].is_number()) return std::nullopt;
  return from[objective.metric].get<double>();
}

std::vector<size_t> pareto_front(const std::vector<std::string>& lines, const std::vector<Objective>& objectives) {
  // Each point's objectives, all turned into "larger is better"; points lacking one are out.
  std::vector<std::vector<double>> score(lines.size());
  std::vector<bool> valid(lines.size(), true);
  for (size_t i = 0; i < lines.size(); ++i)
    for (const Objective& o : objectives) {
      const auto v = objective_value(lines[i], o);
      if (!v) {
        valid[i] = false;
        break;
      }
      score[i].push_back(o.maximize ? *v : -*v);
    }
  // A design over the power cap is kept in the results but cannot be chosen.
  for (size_t i = 0; i < lines.size(); ++i)
    if (valid[i] && json::parse(lines[i]).value("over_power", false)) valid[i] = false;
  std::vector<size_t> front;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!valid[i]) continue;
    bool dominated = false;
    for (size_t j = 0; j < lines.size() && !dominated; ++j) {
      if (j == i || !valid[j]) continue;
      bool no_worse = true, better = false;
      for (size_t k = 0; k < score[i].size(); ++k) {
        if (score[j][k] < score[i][k]) no_worse = false;
        if (score[j][k] > score[i][k]) better = true;
      }
      dominated = no_worse && better;
    }
    if (!dominated) front.push_back(i);
  }
  return front;
}

}  // namespace tessera::sweep
