#include "tessera/base/fs.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "tessera/base/error.hpp"

namespace tessera {

namespace fs = std::filesystem;

namespace {

std::string size_text(uintmax_t bytes) {
  if (bytes >= (uintmax_t{1} << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1 << 30));
  if (bytes >= (uintmax_t{1} << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{} bytes", bytes);
}

const char* special_file_name(fs::file_type type) {
  switch (type) {
    case fs::file_type::character:
      return "a character device";
    case fs::file_type::block:
      return "a block device";
    case fs::file_type::fifo:
      return "a FIFO (named pipe)";
    case fs::file_type::socket:
      return "a socket";
    default:
      return "not a regular file";
  }
}

}  // namespace

uintmax_t check_input_file(const fs::path& path, const InputKind& kind) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec || status.type() == fs::file_type::not_found) {
    const std::error_code link_ec = ec;
    if (fs::is_symlink(fs::symlink_status(path, ec)))
      fail("{}: cannot open: a symlink whose target {} ({})", path.string(),
           link_ec.value() == ELOOP ? "is part of a symlink loop" : "does not exist", link_ec.message());
    fail("{}: cannot open: {}", path.string(), link_ec ? link_ec.message() : std::strerror(ENOENT));
  }
  if (status.type() == fs::file_type::directory) fail("{}: is a directory, expected a file", path.string());
  if (status.type() != fs::file_type::regular)
    fail("{}: is {}, not a regular file (tessera reads a {} only from a regular file)", path.string(),
         special_file_name(status.type()), kind.what);
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) fail("{}: cannot read its size: {}", path.string(), ec.message());
  if (size > kind.max_bytes)
    fail("{}: {} is larger than any {} tessera reads ({}); is this the right file?", path.string(), size_text(size),
         kind.what, size_text(kind.max_bytes));
  return size;
}

std::string read_text_file(const fs::path& path, const InputKind& kind) {
  const uintmax_t size = check_input_file(path, kind);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  // Read at most the limit even if the file grew since its size was checked.
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(size));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) fail("{}: read failed: {}", path.string(), std::strerror(errno));
  return text;
}

std::string excerpt(std::string_view text, size_t max_chars) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (out.size() >= max_chars) return out + "...";
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c < 0x20 || c >= 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  return out;
}

}  // namespace tessera
