#include "tessera/api/validate.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "tessera/api/catalog.hpp"
#include "tessera/api/compare.hpp"
#include "tessera/api/gemm.hpp"
#include "tessera/api/train.hpp"
#include "tessera/base/error.hpp"
#include "tessera/config/yaml_reader.hpp"
#include "tessera/system/system.hpp"

namespace tessera::api {

namespace fs = std::filesystem;

namespace {

struct Metric {
  const char* name;
  const char* workload;
  const char* unit;
};

// What a row may compare, per workload.
constexpr Metric kMetrics[] = {
    {"step_s", "training", "s"},                         // one optimizer step
    {"sequences_per_s", "training", "sequences/s"},      // global batch / step time
    {"tflops_per_chip", "training", "TFLOP/s"},          // hardware FLOPs (recompute counted) per chip
    {"tokens_per_s_per_user", "inference", "tokens/s"},  // decode speed one request sees
    {"time_to_first_token_s", "inference", "s"},         // prefill of one request
    {"tflops", "kernel", "TFLOP/s"},                     // a kernel's 2 m k n FLOPs over its time
    {"seconds", "kernel", "s"},                          // a kernel's time
};

const Metric& metric(const config::YamlMap& row, const std::string& workload) {
  const std::string name = row.string("metric");
  std::string known;
  for (const Metric& m : kMetrics) {
    if (workload == m.workload) {
      if (name == m.name) return m;
      known += fmt::format("{}{}", known.empty() ? "" : ", ", m.name);
    }
  }
  fail("{}: '{}' is not a {} metric tessera predicts; use one of: {}", row.where("metric"), name, workload, known);
}

int64_t positive(const config::YamlMap& map, const std::string& key, int64_t fallback) {
  const int64_t v = map.optional_integer(key).value_or(fallback);
  if (v < 1) fail("{}: must be a positive integer, got {}", map.where(key), v);
  return v;
}

target::TrainingWork training_work(const config::YamlMap& row) {
  const config::YamlMap t = row.map("training");
  target::TrainingWork work;
  work.global_batch = positive(t, "global_batch", 1);
  work.micro_batch = positive(t, "micro_batch", 1);
  work.seq = positive(t, "seq", 2048);
  work.tensor_parallel = t.optional_integer("tp").value_or(0);
  work.pipeline_parallel = t.optional_integer("pp").value_or(0);
  work.interleave = positive(t, "interleave", 1);
  work.zero_stage = static_cast<int>(t.optional_integer("zero").value_or(1));
  // A named choice, its error pointing at the key.
  const auto choice = [&t](const std::string& key, const std::string& fallback, auto parse) {
    try {
      return parse(t.optional_string(key).value_or(fallback));
    } catch (const Error& e) {
      fail("{}: {}", t.where(key), e.what());
    }
  };
  work.recompute = choice("recompute", "selective", ir::parse_recompute);
  work.attention = choice("attention", "fused", target::parse_attention_kernel);
  work.sequence_parallel = t.optional_boolean("sequence_parallel").value_or(true);
  t.finish();
  return work;
}

CompareRequest inference_request(const config::YamlMap& row, const std::string& model, const std::string& system) {
  const config::YamlMap in = row.map("inference");
  CompareRequest request;
  request.model = model;
  request.machines = {system};
  request.prompt_tokens = positive(in, "prompt_tokens", 128);
  request.max_new_tokens = positive(in, "generated_tokens", 128);
  request.batches = {positive(in, "batch", 1)};
  request.precision = PrecisionPolicy::uniform(in.optional_string("dtype").value_or("fp16"));
  in.finish();
  return request;
}

// A component row's kernel: one matrix product, timed only, with the algorithm the row names (or
// the machine's fastest), on the grid of cores it names or, where the source does not give the
// grid, on the fastest of the sides listed under `grids`.
struct KernelRow {
  target::GemmWork work;
  std::vector<int64_t> sides;  // empty: work.cores
};

KernelRow kernel_work(const config::YamlMap& row) {
  const config::YamlMap g = row.map("gemm");
  KernelRow k;
  target::GemmWork& work = k.work;
  work.m = positive(g, "m", 1), work.k = positive(g, "k", 1), work.n = positive(g, "n", 1);
  work.dtype = g.optional_string("dtype").value_or("fp16");
  work.algorithm = g.optional_string("algorithm").value_or("");
  work.cores = g.optional_integer("cores").value_or(0);
  if (g.has("grids")) {
    if (g.has("cores")) fail("{}: give cores (the grid) or grids (the fastest of several), not both", g.where("grids"));
    for (const std::string& side : g.strings("grids")) {
      char* end = nullptr;
      const long long p = std::strtoll(side.c_str(), &end, 10);
      if (side.empty() || *end != '\0' || p < 1)
        fail("{}: '{}' is not a grid side: give whole numbers of cores, e.g. [360, 660]", g.where("grids"), side);
      k.sides.push_back(p);
    }
    if (k.sides.empty()) fail("{}: an empty list: give at least one grid side", g.where("grids"));
  }
  work.values = false;
  g.finish();
  return k;
}

// A kernel row's prediction and how it was made: the algorithm and the cores of the fastest.
struct KernelPrediction {
  double value = 0;
  std::string as;
};

KernelPrediction predict_kernel(const std::string& system, const KernelRow& kernel, const std::string& metric) {
  std::vector<int64_t> sides = kernel.sides;
  if (sides.empty()) sides.push_back(kernel.work.cores);
  double seconds = INFINITY;
  std::string why, as;
  for (const int64_t side : sides) {
    target::GemmWork work = kernel.work;
    work.cores = side;
    const std::vector<report::GemmRun> runs = gemm({system}, work);
    const target::GemmOutcome& o = runs.front().outcome;
    if (o.chosen < 0) {
      why = o.algorithms.empty() ? "no algorithm" : o.algorithms.front().does_not_fit;
      continue;
    }
    const double t = o.algorithms[static_cast<size_t>(o.chosen)].seconds;
    if (t >= seconds) continue;
    seconds = t;
    // The layout's first clause names the cores ("480 x 480 cores from (4, 1); each holds ...").
    as = o.algorithms[static_cast<size_t>(o.chosen)].algorithm + ", " + o.layout.substr(0, o.layout.find(';'));
  }
  if (std::isinf(seconds)) throw Error(why);
  return {metric == "seconds" ? seconds : kernel.work.flops() / seconds / 1e12, as};
}

// The metric's prediction; throws Error when the workload cannot run as configured.
double predict_training(const std::string& model, const std::string& system, const target::TrainingWork& work,
                        const std::string& metric) {
  const target::TrainingOutcome outcome = train_on_machine(model, system, work);
  if (!outcome.status) throw Error(outcome.status.message());
  const target::TrainingReport& r = outcome.report;
  if (metric == "step_s") return r.step_s;
  if (metric == "sequences_per_s") return static_cast<double>(r.global_batch) / r.step_s;
  return r.hardware_flops_per_step / r.step_s / static_cast<double>(r.chips) / 1e12;  // tflops_per_chip
}

double predict_inference(const CompareRequest& request, const std::string& metric) {
  const std::vector<report::CompareRow> rows = compare(request);
  if (rows.empty() || !rows.front().fits) throw Error(rows.empty() ? "no result" : rows.front().note);
  return metric == "tokens_per_s_per_user" ? rows.front().tokens_per_s_per_user : rows.front().time_to_first_token_s;
}

}  // namespace

std::vector<fs::path> validation_files() {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(data_dir() / "configs" / "validation", ec))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  if (files.empty()) fail("no validation files in {}", (data_dir() / "configs" / "validation").string());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<report::ValidationRow> validate(const std::vector<fs::path>& files) {
  std::vector<report::ValidationRow> out;
  for (const fs::path& file : files) {
    const config::YamlMap doc = config::YamlMap::parse_file(file);
    const std::string source = doc.optional_string("source").value_or("");
    const std::string url = doc.optional_string("url").value_or("");
    const std::string date = doc.optional_string("date").value_or("");
    for (const config::YamlMap& row : doc.maps("rows")) {
      report::ValidationRow r;
      r.file = file.filename().string();
      r.name = row.string("name");
      r.system = row.string("system");
      const int sections = row.has("training") + row.has("inference") + row.has("gemm");
      if (sections != 1)
        fail("{}: a row has one of a training, an inference or a gemm (kernel) section", row.where("name"));
      r.workload = row.has("training") ? "training" : row.has("inference") ? "inference" : "kernel";
      const bool kernel = r.workload == "kernel";
      r.model = kernel ? "" : row.string("model");
      const Metric& m = metric(row, r.workload);
      r.metric = m.name, r.unit = m.unit;
      r.published = row.number("published");
      if (!(r.published > 0) || !std::isfinite(r.published))
        fail("{}: a published figure is a positive number, got {}", row.where("published"), r.published);
      r.source = row.optional_string("source").value_or(source);
      r.url = row.optional_string("url").value_or(url);
      r.date = row.optional_string("date").value_or(date);
      r.note = row.optional_string("note").value_or("");
      r.known_gap = row.optional_string("known_gap").value_or("");
      if (r.source.empty()) fail("{}: the row names no source (and its file none)", row.where("name"));
      // A name or path that does not resolve is an error in the file, not a prediction.
      if (!kernel) resolve_model(r.model);
      resolve_arch(system::parse_machine_name(r.system).second);
      const bool training = r.workload == "training";
      const target::TrainingWork work = training ? training_work(row) : target::TrainingWork{};
      const CompareRequest request = training || kernel ? CompareRequest{} : inference_request(row, r.model, r.system);
      const KernelRow product = kernel ? kernel_work(row) : KernelRow{};
      row.finish();
      try {
        if (kernel) {
          const KernelPrediction k = predict_kernel(r.system, product, r.metric);
          r.predicted = k.value, r.predicted_as = k.as;
        } else {
          r.predicted =
              training ? predict_training(r.model, r.system, work, r.metric) : predict_inference(request, r.metric);
        }
        r.predicted_ok = true;
      } catch (const Error& e) {
        r.failure = e.what();
      }
      out.push_back(r);
    }
    doc.finish();
  }
  return out;
}

}  // namespace tessera::api
