#pragma once

#include <filesystem>
#include <string>

namespace tessera {

// Reads a whole file; throws Error naming the path if it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace tessera
