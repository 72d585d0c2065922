#include "tessera/report/gemm_report.hpp"

#include <fmt/core.h>

#include <nlohmann/json.hpp>

namespace tessera::report {

namespace {

std::string time_text(double s) {
  if (s >= 1) return fmt::format("{:.3f} s", s);
  if (s >= 1e-3) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.2f} us", s * 1e6);
}

std::string energy_text(double j) {
  if (j >= 1) return fmt::format("{:.3f} J", j);
  if (j >= 1e-3) return fmt::format("{:.3f} mJ", j * 1e3);
  return fmt::format("{:.2f} uJ", j * 1e6);
}

}  // namespace

std::string gemm_table(const target::GemmWork& work, const std::vector<GemmRun>& runs) {
  std::string out = fmt::format("C[{0} x {2}] = A[{0} x {1}] x B[{1} x {2}] in {3}: {4:.4g} GFLOP\n", work.m, work.k,
                                work.n, work.dtype, work.flops() / 1e9);
  for (const auto& run : runs) {
    const auto& o = run.outcome;
    out += fmt::format("\n{}: {}\n  peak {:.4g} TFLOP/s at {:.3g} GHz\n", run.arch, o.layout,
                       2 * o.peak_macs_per_s / 1e12, run.clock_hz / 1e9);
    out += fmt::format("  {:<9} {:>11} {:>10} {:>7} {:>11} {:>13} {:>8} {:>16} {:>10} {:>10}\n", "algorithm", "time",
                       "TFLOP/s", "peak", "compute", "exposed comm.", "bound", "SRAM per core", "energy", "max |err|");
    for (size_t i = 0; i < o.algorithms.size(); ++i) {
      const auto& a = o.algorithms[i];
      const std::string memory =
          fmt::format("{:.1f}/{:.1f} KiB", a.memory_bytes / 1024, a.memory_available_bytes / 1024);
      if (!a.does_not_fit.empty()) {
        out += fmt::format("  {:<9} does not fit: {}\n", a.algorithm, a.does_not_fit);
        continue;
      }
      const double rate = work.flops() / a.seconds;
      const std::string error = a.max_abs_error < 0 ? "-" : fmt::format("{:.2g}", a.max_abs_error);
      out += fmt::format("  {:<9} {:>11} {:>10.4g} {:>6.1f}% {:>11} {:>13} {:>8} {:>16} {:>10} {:>10}{}\n", a.algorithm,
                         time_text(a.seconds), rate / 1e12, 100 * rate / (2 * o.peak_macs_per_s),
                         time_text(a.compute_s), time_text(a.communication_s), a.bound, memory,
                         energy_text(a.energy.total_j()), error, static_cast<int>(i) == o.chosen ? "  <- fastest" : "");
    }
    std::string issue;
    for (const auto& a : o.algorithms)
      if (a.does_not_fit.empty() && a.issue_s > 0)
        issue += fmt::format("{}{} {:.0f}%", issue.empty() ? "" : ", ", a.algorithm, 100 * a.issue_s / a.compute_s);
    if (!issue.empty()) out += "  of compute, vector instructions' overhead (core.vector_op_overhead): " + issue + "\n";
    if (o.chosen < 0) out += "  no algorithm fits\n";
    if (!o.values_note.empty()) out += "  " + o.values_note + "\n";
    if (o.max_abs_product > 0)
      out += fmt::format("  values: every core's C tile against the host's product (largest |C| {:.3g})\n",
                         o.max_abs_product);
  }
  return out;
}

std::string gemm_json(const target::GemmWork& work, const std::vector<GemmRun>& runs) {
  nlohmann::json machines = nlohmann::json::array();
  for (const auto& run : runs) {
    const auto& o = run.outcome;
    nlohmann::json algorithms = nlohmann::json::array();
    for (const auto& a : o.algorithms) {
      nlohmann::json j = {{"algorithm", a.algorithm},
                          {"description", a.description},
                          {"fits", a.does_not_fit.empty()},
                          {"memory_bytes_per_core", a.memory_bytes},
                          {"memory_available_bytes_per_core", a.memory_available_bytes}};
      if (!a.does_not_fit.empty()) {
        j["does_not_fit"] = a.does_not_fit;
      } else {
        j.update({{"steps", a.steps},
                  {"seconds", a.seconds},
                  {"tflops", work.flops() / a.seconds / 1e12},
                  {"share_of_peak", work.flops() / a.seconds / (2 * o.peak_macs_per_s)},
                  {"compute_s", a.compute_s},
                  {"instruction_issue_s", a.issue_s},
                  {"exposed_communication_s", a.communication_s},
                  {"word_hops", a.word_hops},
                  {"energy_j", a.energy.total_j()},
                  {"energy",
                   {{"compute_j", a.energy.compute_j},
                    {"memory_j", a.energy.memory_j},
                    {"communication_j", a.energy.communication_j}}},
                  {"bound", a.bound}});
        if (a.max_abs_error >= 0) j["max_abs_error"] = a.max_abs_error;
      }
      algorithms.push_back(std::move(j));
    }
    machines.push_back(
        {{"arch", run.arch},
         {"clock_hz", run.clock_hz},
         {"layout", o.layout},
         {"peak_tflops", 2 * o.peak_macs_per_s / 1e12},
         {"algorithms", algorithms},
         {"chosen", o.chosen < 0 ? nlohmann::json(nullptr)
                                 : nlohmann::json(o.algorithms[static_cast<size_t>(o.chosen)].algorithm)},
         {"max_abs_product", o.max_abs_product},
         {"values_note", o.values_note}});
  }
  return nlohmann::json{{"schema", "tessera-gemm/1"}, {"m", work.m},         {"k", work.k}, {"n", work.n},
                        {"dtype", work.dtype},        {"machines", machines}}
             .dump(1) +
         "\n";
}

}  // namespace tessera::report
