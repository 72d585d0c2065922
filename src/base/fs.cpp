#include "tessera/base/fs.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tessera/base/error.hpp"

namespace tessera {

std::string read_text_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{}: is a directory, expected a file", path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace tessera
