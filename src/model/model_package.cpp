#include "tessera/model/model_package.hpp"

#include <algorithm>

#include "tessera/base/error.hpp"

namespace tessera::model {

namespace fs = std::filesystem;

std::vector<ModelEntry> list_models(const fs::path& data_dir) {
  std::vector<ModelEntry> entries;
  std::error_code ec;
  for (const auto& dir : fs::directory_iterator(data_dir / "models", ec))
    if (fs::exists(dir.path() / "config.yaml", ec))
      entries.push_back({dir.path().filename().string(), dir.path() / "config.yaml", true});
  for (const auto& file : fs::directory_iterator(data_dir / "configs" / "models", ec))
    if (file.path().extension() == ".yaml") entries.push_back({file.path().stem().string(), file.path(), false});
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.ships_weights != b.ships_weights ? a.ships_weights : a.name < b.name;
  });
  return entries;
}

fs::path resolve_model_config(const std::string& name_or_path, const fs::path& data_dir) {
  const fs::path given(name_or_path);
  std::error_code ec;
  if (fs::is_directory(given, ec) && fs::exists(given / "config.yaml", ec)) return given / "config.yaml";
  if (fs::is_directory(given, ec) && fs::exists(given / "config.json", ec))
    return given / "config.json";  // Hugging Face
  // Any other file, link or special file given by path is the config: reading it says what is wrong.
  const fs::file_type type = fs::symlink_status(given, ec).type();
  if (type != fs::file_type::not_found && type != fs::file_type::none && type != fs::file_type::directory) return given;
  for (const auto& entry : list_models(data_dir))
    if (entry.name == name_or_path) return entry.config_path;
  std::string names;
  for (const auto& entry : list_models(data_dir)) names += (names.empty() ? "" : ", ") + entry.name;
  fail(
      "unknown model '{}': not a config file, a model directory (config.yaml, or a Hugging Face config.json), or a "
      "shipped model ({}); see `tessera models`",
      name_or_path, names.empty() ? std::string("none found under ") + data_dir.string() : names);
}

}  // namespace tessera::model
