#include "tessera/compiler/fit.hpp"

#include <fmt/core.h>

namespace tessera::compiler {

std::string describe(const FitFailure& f) {
  return fmt::format("{} does not fit on {}: {}{}{}", f.subject, f.machine, f.detail, f.hint.empty() ? "" : "; ",
                     f.hint);
}

}  // namespace tessera::compiler
