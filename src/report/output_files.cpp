#include "tessera/report/output_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bit>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"

namespace tessera::report {

namespace fs = std::filesystem;

const char* const kStepsCsvHeader =
    "kind,name,stage,pattern,passes,cycles,compute_cycles,communication_cycles,host_cycles,macs_per_core,"
    "collective_words,busiest_port_words";
const char* const kCompareCsvHeader =
    "arch,model,chips,batch,fits,mapping,time_to_first_token_s,tokens_per_s_per_user,tokens_per_s,"
    "served_tokens_per_s,energy_per_token_j,utilization,bound,tokens,note";
const char* const kChipStepsCsvHeader = "phase,name,op,bound,seconds,macs,bytes";
const char* const kTrainCsvHeader = "step,lr,loss,gradient_norm,held_out_loss,tokens_per_s,elapsed_s";
const char* const kSvgHead = "<svg xmlns=\"http://www.w3.org/2000/svg\" data-generator=\"tessera\"";
const char* const kValidationCsvHeader =
    "name,workload,model,system,metric,unit,published,predicted,error,source,url,date,failure,known_gap";
const char* const kHtmlHead =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta name=\"generator\" "
    "content=\"tessera\"><title>tessera: ";

// No output tessera writes is larger; a bigger file at an output path is not one of ours.
constexpr InputKind kOwnOutput{"output tessera wrote", uintmax_t{2} << 30};
// The marker of a directory tessera made (the name heatmap directories have always had).
constexpr const char* kDirectoryMarker = ".tessera-heatmaps";

namespace {

// Fields of one CSV line; quoted fields may hold commas. -1 when a quote is left open.
int64_t csv_fields(std::string_view line) {
  int64_t fields = 1;
  bool quoted = false;
  for (const char c : line) {
    if (c == '"')
      quoted = !quoted;
    else if (c == ',' && !quoted)
      ++fields;
  }
  return quoted ? -1 : fields;
}

bool is_tessera_csv(std::string_view text) {
  const size_t end = text.find('\n');
  if (end == std::string_view::npos) return false;
  const std::string_view header = text.substr(0, end);
  if (header != kStepsCsvHeader && header != kCompareCsvHeader && header != kChipStepsCsvHeader &&
      header != kTrainCsvHeader && header != kValidationCsvHeader)
    return false;
  const int64_t width = csv_fields(header);
  for (size_t at = end + 1; at < text.size();) {
    const size_t next = text.find('\n', at);
    if (next == std::string_view::npos) return false;  // tessera ends every row with a newline
    if (csv_fields(text.substr(at, next - at)) != width) return false;
    at = next + 1;
  }
  return true;
}

bool is_tessera_json(std::string_view text) {
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return false;
  for (const char* key : {"format", "schema"}) {
    const auto it = doc.find(key);
    if (it != doc.end() && it->is_string() && it->get<std::string>().starts_with("tessera-")) return true;
  }
  return false;
}

bool is_tessera_html(std::string_view text) {
  return text.starts_with(kHtmlHead) && text.ends_with("</body></html>\n");
}

[[noreturn]] void refuse(const std::string& path, const std::string& why) {
  fail("{}: {}; choose another path (nothing was written)", path, why);
}

// `path` with a symlink followed to the file it names; refuses loops, dangling links and paths
// whose directory does not exist.
fs::path resolve(const std::string& path) {
  if (path.empty()) fail("an output path is empty");
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(path, ec);
  if (ec && link.type() != fs::file_type::not_found)
    refuse(path, fmt::format("cannot be used as an output: {}", ec.message()));
  if (link.type() == fs::file_type::symlink) {
    const fs::path target = fs::canonical(path, ec);
    if (ec)
      refuse(path, ec.value() == ELOOP ? std::string("is a symlink in a loop")
                                       : fmt::format("is a symlink whose target does not exist ({})", ec.message()));
    return target;
  }
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  const fs::file_status dir = fs::status(parent, ec);
  if (dir.type() == fs::file_type::not_found)
    refuse(path, fmt::format("its directory {} does not exist", parent.string()));
  if (ec) refuse(path, fmt::format("its directory {} cannot be used: {}", parent.string(), ec.message()));
  if (dir.type() != fs::file_type::directory) refuse(path, fmt::format("{} is not a directory", parent.string()));
  return path;
}

// `path` resolved (resolve) and the type of what is there now: not_found when nothing is.
std::pair<fs::path, fs::file_type> resolve_existing(const std::string& path) {
  fs::path target = resolve(path);
  std::error_code ec;
  const fs::file_status status = fs::status(target, ec);
  if (status.type() != fs::file_type::not_found && ec)
    refuse(path, fmt::format("cannot be used as an output: {}", ec.message()));
  return {std::move(target), status.type()};
}

void refuse_inputs(const std::string& path, const fs::path& target, const std::vector<fs::path>& inputs) {
  for (const auto& input : inputs) {
    std::error_code ec;
    if (fs::equivalent(target, input, ec))
      refuse(path, fmt::format("is also an input of this command ({})", input.string()));
  }
}

}  // namespace

namespace {

constexpr std::string_view kNpyMagic("\x93NUMPY\x01\x00", 8);
constexpr std::string_view kNpyMark = "# written by tessera";

}  // namespace

std::string npy_f32(std::span<const float> values, const std::vector<int64_t>& shape) {
  std::string dims;
  for (const int64_t d : shape) dims += fmt::format("{}, ", d);
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }} {}", dims, kNpyMark);
  header.append((64 - (kNpyMagic.size() + 2 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out(kNpyMagic);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  static_assert(std::endian::native == std::endian::little, "npy_f32 writes the host's floats as '<f4'");
  out.append(reinterpret_cast<const char*>(values.data()), values.size_bytes());
  return out;
}

bool is_tessera_output(std::string_view text) {
  const bool svg = text.starts_with(kSvgHead) && text.ends_with("</svg>\n");
  const bool npy = text.starts_with(kNpyMagic) && text.substr(0, 256).find(kNpyMark) != std::string_view::npos;
  return is_tessera_json(text) || is_tessera_csv(text) || is_tessera_html(text) || svg || npy;
}

fs::path check_output_path(const std::string& path, const std::vector<fs::path>& inputs) {
  const auto [target, type] = resolve_existing(path);
  if (type == fs::file_type::not_found) return target;
  if (type == fs::file_type::directory) refuse(path, "is a directory");
  if (type != fs::file_type::regular) refuse(path, "is not a regular file");
  refuse_inputs(path, target, inputs);
  std::error_code ec;
  const uintmax_t size = fs::file_size(target, ec);
  if (ec) refuse(path, fmt::format("cannot be used as an output: {}", ec.message()));
  if (size == 0) return target;
  if (size > kOwnOutput.max_bytes || !is_tessera_output(read_text_file(target, kOwnOutput)))
    refuse(path, "exists and is not a file tessera wrote");
  return target;
}

namespace {

// Writes `bytes` to a temporary file beside `target` and renames it over `target`.
void write_atomically(const fs::path& target, std::string_view bytes, const std::string& path) {
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::string temp = (dir / fmt::format(".{}.tessera-XXXXXX", target.filename().string())).string();
  const int fd = mkstemp(temp.data());
  if (fd < 0) fail("{}: cannot write in {}: {} (nothing was written)", path, dir.string(), std::strerror(errno));
  const mode_t mask = umask(0);
  umask(mask);
  bool ok = fchmod(fd, 0666 & ~mask) == 0;
  for (size_t done = 0; ok && done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  const int write_errno = errno;
  ok = (::close(fd) == 0) && ok;
  if (ok && std::rename(temp.c_str(), target.c_str()) == 0) return;
  const int error = ok ? errno : write_errno;
  ::unlink(temp.c_str());
  fail("{}: write failed: {} (nothing was written)", path, std::strerror(error));
}

}  // namespace

void write_output(const std::string& path, std::string_view bytes, const std::vector<fs::path>& inputs) {
  write_atomically(check_output_path(path, inputs), bytes, path);
}

fs::path check_output_directory(const std::string& dir, const std::vector<fs::path>& inputs) {
  const auto [target, type] = resolve_existing(dir);
  if (type == fs::file_type::not_found) return target;
  if (type != fs::file_type::directory) refuse(dir, "exists and is not a directory");
  std::error_code ec;
  for (const auto& input : inputs) {
    const fs::path parent = input.parent_path().empty() ? fs::path(".") : input.parent_path();
    if (fs::equivalent(target, parent, ec))
      refuse(dir, fmt::format("holds an input of this command ({})", input.string()));
  }
  const bool empty = fs::is_empty(target, ec);
  if (ec) refuse(dir, fmt::format("cannot be read: {}", ec.message()));
  if (!empty && !fs::exists(target / kDirectoryMarker, ec)) refuse(dir, "exists and is not a directory tessera made");
  return target;
}

fs::path prepare_output_directory(const std::string& dir, const std::vector<fs::path>& inputs) {
  const fs::path target = check_output_directory(dir, inputs);
  std::error_code ec;
  if (!fs::create_directory(target, ec) && ec) refuse(dir, fmt::format("cannot be created: {}", ec.message()));
  write_output((target / kDirectoryMarker).string(), "");
  return target;
}

void write_into_output_directory(const fs::path& dir, const std::string& name, std::string_view bytes) {
  const fs::path target = dir / name;
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(target, ec);
  if (status.type() != fs::file_type::not_found && status.type() != fs::file_type::regular)
    refuse(target.string(), "is not a regular file");
  write_atomically(target, bytes, target.string());
}

}  // namespace tessera::report
