#include "tessera/base/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace tessera {

void assertion_failed(const char* expression, const char* file, int line) {
  std::fprintf(stderr, "tessera internal error: assertion '%s' failed at %s:%d\n", expression, file, line);
  std::abort();
}

}  // namespace tessera
