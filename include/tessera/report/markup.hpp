// Text placed in SVG and HTML documents tessera writes.
#pragma once

#include <string>

namespace tessera::report {

// `text` with &, <, > and " replaced by their entities.
inline std::string markup_escaped(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

}  // namespace tessera::report
