// "Does not fit" as a value (as Timeloop's EvalStatus): which resource overflowed, where, by how
// much, and what would fit. Compilers return it; the sentence a user reads is rendered from it
// only at the edge (describe), and a sweep can ask for the resource and the numbers instead.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace tessera::compiler {

struct FitFailure {
  std::string subject;   // what does not fit: the model's name
  std::string machine;   // where it was put: "wse3", "one gc200", "2 x h100"
  std::string resource;  // what overflowed: "SRAM per core", "SRAM per tile", "HBM per GPU", "routes per core"
  std::string where;     // which part of the machine: "each layer's region of 90x41 cores", "each tile", ...
  double needed = 0, available = 0;  // of the resource, in `unit`, at `where`
  std::string unit;                  // "bytes" or "routes"
  std::string detail;                // how `needed` breaks down, with figures
  std::string hint;                  // what would fit (may be empty)
};

// "<subject> does not fit on <machine>: <detail>; <hint>".
std::string describe(const FitFailure& failure);

// A compiler's verdict: fits, or the FitFailure that says why not.
class FitStatus {
 public:
  FitStatus() = default;
  FitStatus(FitFailure failure) : failure_(std::move(failure)) {}  // NOLINT: a failure converts
  explicit operator bool() const { return !failure_; }
  const FitFailure& failure() const { return *failure_; }
  std::string message() const { return failure_ ? describe(*failure_) : std::string(); }

 private:
  std::optional<FitFailure> failure_;
};

}  // namespace tessera::compiler
