// Finding the models that ship: packages with weights under models/NAME/config.yaml, and
// shape-only configs under configs/models/NAME.yaml.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace tessera::model {

struct ModelEntry {
  std::string name;
  std::filesystem::path config_path;
  bool ships_weights = false;
};

std::vector<ModelEntry> list_models(const std::filesystem::path& data_dir);

// Resolves a model name (or a path to a config file or package directory) to its config file;
// throws Error listing the known names if nothing matches.
std::filesystem::path resolve_model_config(const std::string& name_or_path, const std::filesystem::path& data_dir);

}  // namespace tessera::model
