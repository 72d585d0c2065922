// The Python module: `import tessera`. A thin binding of the api library (as the CLI is): each
// function takes the request's fields as keyword arguments and returns plain dicts (the same
// content as the CLI's JSON, docs/metrics.md) and numpy arrays. No library logic lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tessera/api/compare.hpp"
#include "tessera/api/gemm.hpp"
#include "tessera/api/run.hpp"
#include "tessera/api/sweep.hpp"
#include "tessera/api/train.hpp"
#include "tessera/base/error.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/report/compare.hpp"
#include "tessera/report/run_report.hpp"
#include "tessera/report/training_report.hpp"

namespace py = pybind11;
using namespace tessera;

namespace {

py::object from_json(const std::string& text) { return py::module_::import("json").attr("loads")(text); }

PrecisionPolicy precision(const std::string& dtype) {
  PrecisionPolicy policy = dtype.empty() ? PrecisionPolicy{} : PrecisionPolicy::uniform(dtype);
  policy.validate();
  return policy;
}

py::dict run(const std::string& model, const std::string& arch, const std::string& prompt, int64_t max_new_tokens,
             double temperature, int64_t top_k, uint64_t seed, bool values, int64_t prompt_tokens,
             const std::string& dtype, const std::string& weights, const std::string& fidelity,
             const std::string& tokenizer) {
  api::RunRequest request;
  request.model = model, request.arch = arch, request.weights = weights, request.prompt = prompt;
  request.tokenizer_dir = tokenizer;
  request.prompt_tokens = prompt_tokens, request.max_new_tokens = max_new_tokens;
  request.sampling = {temperature, top_k, seed};
  request.values = values, request.keep_logits = values, request.precision = precision(dtype);
  if (fidelity != "flow" && fidelity != "analytic" && fidelity != "cycle")
    fail("fidelity '{}': expected analytic, flow or cycle", fidelity);
  request.simulate.fidelity = fidelity == "analytic" ? target::Fidelity::Analytic
                              : fidelity == "cycle"  ? target::Fidelity::Cycle
                                                     : target::Fidelity::Flow;
  request.simulate.link_loads = arch != "host";
  std::string text;
  api::RunResult result;
  {
    py::gil_scoped_release unlocked;
    result = api::run(request, [&](std::string_view piece) { text += piece; });
  }
  const ref::GenerationResult& g = result.generation;
  py::dict out;
  out["text"] = text;
  out["prompt_ids"] = g.prompt;
  out["generated_ids"] = g.tokens;
  py::list masks;  // an encoder's run: each [MASK]'s most likely tokens
  for (const auto& m : g.masks) {
    py::dict mask;
    mask["position"] = m.position, mask["ids"] = m.ids, mask["probabilities"] = m.probabilities;
    mask["tokens"] = m.tokens;
    masks.append(mask);
  }
  out["masks"] = masks;
  const auto rows = static_cast<py::ssize_t>(g.logit_rows());
  const py::ssize_t vocab = rows > 0 ? static_cast<py::ssize_t>(g.logits.size()) / rows : 0;
  py::array_t<float> logits({rows, vocab});
  std::copy(g.logits.begin(), g.logits.end(), logits.mutable_data());
  out["logits"] = logits;
  out["report"] = result.report ? from_json(report::run_json(*result.report)) : py::none();
  // A mesh's words per link over the run, one [height, width] array per direction (the heatmaps).
  if (result.report && out["report"].contains("link_load")) {
    const py::object load = out["report"]["link_load"];
    const py::object numpy = py::module_::import("numpy");
    py::dict maps;
    for (const char* direction : {"east", "west", "north", "south"})
      maps[direction] = numpy.attr("asarray")(load[direction]).attr("reshape")(load["height"], load["width"]);
    out["link_load"] = maps;
  }
  return out;
}

py::list compare(const std::string& model, const std::vector<std::string>& archs, int64_t prompt_tokens,
                 int64_t max_new_tokens, const std::vector<int64_t>& batches, const std::string& dtype,
                 const std::string& routing, int64_t expert_parallel) {
  api::CompareRequest request;
  request.model = model, request.machines = archs, request.prompt_tokens = prompt_tokens;
  request.max_new_tokens = max_new_tokens, request.batches = batches, request.precision = precision(dtype);
  request.routing = compiler::parse_routing(routing);
  request.expert_parallel = expert_parallel;
  std::vector<report::CompareRow> rows;
  {
    py::gil_scoped_release unlocked;
    rows = api::compare(request);
  }
  return from_json(report::compare_json(rows)).attr("get")("rows", py::list());
}

py::dict eval(const std::string& model, const std::string& text_path, const std::string& arch, int64_t window,
              const std::string& dtype, const std::string& weights) {
  api::EvalRequest request;
  request.model = model, request.arch = arch, request.text_path = text_path, request.window = window;
  request.precision = precision(dtype), request.weights = weights;
  api::EvalResult result;
  {
    py::gil_scoped_release unlocked;
    result = api::eval(request);
  }
  py::dict out;
  out["model"] = result.model_name;
  out["window"] = result.window;
  out["perplexity"] = result.perplexity.perplexity;
  out["mean_nll"] = result.perplexity.mean_nll;
  out["tokens_scored"] = result.perplexity.tokens_scored;
  return out;
}

py::object train_step(const std::string& model, const std::string& machine, int64_t seq, int64_t global_batch,
                      const std::string& recompute, const std::string& attention, bool sequence_parallel) {
  target::TrainingWork work;
  work.seq = seq, work.global_batch = global_batch, work.recompute = ir::parse_recompute(recompute);
  work.attention = target::parse_attention_kernel(attention);
  work.sequence_parallel = sequence_parallel;
  target::TrainingOutcome outcome;
  {
    py::gil_scoped_release unlocked;
    outcome = api::train_on_machine(model, machine, work);
  }
  if (!outcome.status) fail("{}", outcome.status.message());
  return from_json(report::training_step_json(outcome.report, machine));
}

// Trains with values (the host reference trainer, or one chip in its order of arithmetic): every
// step's loss, learning rate and gradient norm as numpy arrays, the held-out losses by step.
py::dict train(const std::string& model, const std::string& text_path, int64_t steps, int64_t batch, int64_t seq,
               double lr, int64_t warmup, uint64_t seed, const std::string& arch, const std::string& precision,
               const std::string& out, int64_t eval_every) {
  api::TrainRequest request;
  request.model = model, request.text_path = text_path, request.steps = steps, request.batch = batch;
  request.seq = seq, request.lr = lr, request.warmup = warmup, request.seed = seed;
  request.arch = arch == "host" ? "" : arch, request.precision = precision, request.out_dir = out;
  request.eval_every = eval_every;
  api::TrainResult result;
  {
    py::gil_scoped_release unlocked;
    result = api::train(request);
  }
  const auto n = static_cast<py::ssize_t>(result.history.size());
  py::array_t<double> loss(n), learning_rate(n), gradient_norm(n);
  py::dict held_out;
  for (py::ssize_t i = 0; i < n; ++i) {
    const api::TrainStep& st = result.history[static_cast<size_t>(i)];
    loss.mutable_at(i) = st.loss, learning_rate.mutable_at(i) = st.lr, gradient_norm.mutable_at(i) = st.gradient_norm;
    if (st.held_out) held_out[py::int_(st.step)] = *st.held_out;
  }
  py::dict r;
  r["model"] = result.model_name;
  r["loss"] = loss, r["lr"] = learning_rate, r["gradient_norm"] = gradient_norm;
  r["held_out"] = held_out;
  r["initial_held_out"] = result.initial_held_out, r["final_held_out"] = result.final_held_out;
  r["tokens_per_s"] = result.tokens_per_s, r["parameters"] = result.parameters;
  r["chip_layout"] = result.chip_layout;
  return r;
}

// A sweep file run into `out` (resumed if it holds results): the summary, and every point's
// results line as a dict with `on_front`.
py::dict run_sweep(const std::string& spec_file, const std::string& out, int threads) {
  api::SweepOutcome outcome;
  std::vector<std::string> lines;
  std::vector<size_t> front;
  {
    py::gil_scoped_release unlocked;
    const sweep::Spec spec = api::load_sweep(spec_file);
    outcome = api::run_sweep(spec, api::sweep_directory(spec, spec_file, out), threads);
    lines = sweep::read_results(outcome.dir / "results.jsonl");
    front = sweep::pareto_front(lines, spec.objectives);
  }
  py::list points;
  for (size_t i = 0; i < lines.size(); ++i) {
    py::dict point = from_json(lines[i]);
    point["on_front"] = std::find(front.begin(), front.end(), i) != front.end();
    points.append(point);
  }
  py::dict result;
  result["dir"] = outcome.dir.string();
  result["summary"] = outcome.summary;
  result["resumed"] = outcome.resumed;
  result["points"] = points;
  return result;
}

// One matrix product alone on each machine (`tessera gemm`): the same dict as `gemm --json`.
py::dict gemm(int64_t m, int64_t k, int64_t n, const std::vector<std::string>& archs, const std::string& dtype,
              const std::string& algorithm, int64_t cores, const std::string& fidelity, bool values, uint64_t seed) {
  if (fidelity != "flow" && fidelity != "cycle") fail("fidelity '{}': expected flow or cycle", fidelity);
  target::GemmWork work{.m = m,
                        .k = k,
                        .n = n,
                        .dtype = dtype,
                        .algorithm = algorithm,
                        .cores = cores,
                        .fidelity = fidelity == "cycle" ? target::Fidelity::Cycle : target::Fidelity::Flow,
                        .values = values,
                        .seed = seed};
  std::string json;
  {
    py::gil_scoped_release unlocked;
    json = report::gemm_json(work, api::gemm(archs, work));
  }
  return from_json(json);
}

}  // namespace

PYBIND11_MODULE(tessera, m) {
  m.doc() = "tessera: transformer models on simulated AI accelerators (the api library, as dicts and arrays)";
  py::register_exception<Error>(m, "Error", PyExc_ValueError);
  m.def("run", &run, "Generate text on a simulated machine (or the host reference) and report it",
        py::arg("model") = "default", py::arg("arch") = "wse2",
        py::arg("prompt") = "It is a truth universally acknowledged, that", py::arg("max_new_tokens") = 64,
        py::arg("temperature") = 0.8, py::arg("top_k") = 40, py::arg("seed") = 0, py::arg("values") = true,
        py::arg("prompt_tokens") = 0, py::arg("dtype") = "", py::arg("weights") = "", py::arg("fidelity") = "flow",
        py::arg("tokenizer") = "");
  m.def("compare", &compare, "One model on several machines: a dict per machine and batch",
        py::arg("model") = "default", py::arg("archs") = std::vector<std::string>{"wse2"},
        py::arg("prompt_tokens") = 128, py::arg("max_new_tokens") = 128, py::arg("batches") = std::vector<int64_t>{1},
        py::arg("dtype") = "", py::arg("routing") = "uniform", py::arg("expert_parallel") = 0);
  m.def("gemm", &gemm, "One matrix product C = A B alone on each machine: every algorithm, the fastest chosen",
        py::arg("m"), py::arg("k"), py::arg("n"), py::arg("archs") = std::vector<std::string>{"wse2"},
        py::arg("dtype") = "fp16", py::arg("algorithm") = "", py::arg("cores") = 0, py::arg("fidelity") = "flow",
        py::arg("values") = true, py::arg("seed") = 1);
  m.def("eval", &eval, "Perplexity of a model on a text file", py::arg("model") = "default", py::arg("text_path"),
        py::arg("arch") = "host", py::arg("window") = 0, py::arg("dtype") = "", py::arg("weights") = "");
  m.def("train_step", &train_step, "One training step on a machine, timing-only", py::arg("model"), py::arg("machine"),
        py::arg("seq") = 0, py::arg("global_batch") = 0, py::arg("recompute") = "selective",
        py::arg("attention") = "fused", py::arg("sequence_parallel") = true);
  m.def("train", &train, "Train with values on a text (host, or one wse2/gc200 in its order of arithmetic)",
        py::arg("model") = "default", py::arg("text_path"), py::arg("steps") = 200, py::arg("batch") = 8,
        py::arg("seq") = 128, py::arg("lr") = 1e-3, py::arg("warmup") = 20, py::arg("seed") = 1,
        py::arg("arch") = "host", py::arg("precision") = "fp32", py::arg("out") = "", py::arg("eval_every") = 50);
  m.def("sweep", &run_sweep, "A design-space sweep (docs/sweep.md): its summary and every point, resumable",
        py::arg("spec"), py::arg("out") = "", py::arg("threads") = 0);
}
