// Golden files: fixed commands must reproduce their committed JSON (tests/golden/commands.txt).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace {

using nlohmann::json;

// Where `actual` differs from `expected`: numbers beyond 1e-9 relative, anything else exactly;
// members whose key ends in "origin" are paths of this checkout and are skipped.
void compare(const json& expected, const json& actual, const std::string& where, std::vector<std::string>& diffs) {
  if (diffs.size() > 20) return;
  if (expected.is_number() && actual.is_number()) {
    const double e = expected.get<double>(), a = actual.get<double>();
    if (std::abs(e - a) > 1e-9 * std::max(std::abs(e), std::abs(a)))
      diffs.push_back(where + ": expected " + expected.dump() + ", got " + actual.dump());
    return;
  }
  if (expected.type() != actual.type() || expected.size() != actual.size()) {
    diffs.push_back(where + ": expected " + expected.dump().substr(0, 200) + ", got " + actual.dump().substr(0, 200));
    return;
  }
  if (expected.is_object()) {
    for (const auto& [key, value] : expected.items()) {
      if (key.ends_with("origin")) continue;
      if (!actual.contains(key)) {
        diffs.push_back(where + "." + key + ": missing");
        continue;
      }
      compare(value, actual[key], where + "." + key, diffs);
    }
  } else if (expected.is_array()) {
    for (size_t i = 0; i < expected.size(); ++i)
      compare(expected[i], actual[i], where + "[" + std::to_string(i) + "]", diffs);
  } else if (expected != actual) {
    diffs.push_back(where + ": expected " + expected.dump() + ", got " + actual.dump());
  }
}

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return json::parse(in, nullptr, false);
}

}  // namespace

TEST(Golden, FixedCommandsReproduceTheirCommittedJson) {
  const std::filesystem::path dir = TESSERA_SOURCE_DIR "/tests/golden";
  std::ifstream commands(dir / "commands.txt");
  std::string line;
  int checked = 0;
  while (std::getline(commands, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    const std::string file = line.substr(0, tab), args = line.substr(tab + 1);
    const auto out = std::filesystem::temp_directory_path() / ("tessera_golden_" + file);
    std::filesystem::remove(out);
    const int status =
        std::system((std::string(TESSERA_CLI) + " " + args + " --json " + out.string() + " > /dev/null").c_str());
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << args;
    const json expected = read_json(dir / file), actual = read_json(out);
    ASSERT_FALSE(expected.is_discarded()) << file << ": run scripts/update_golden.sh";
    std::vector<std::string> diffs;
    compare(expected, actual, file, diffs);
    std::string all;
    for (const auto& d : diffs) all += d + "\n";
    EXPECT_TRUE(diffs.empty()) << args << "\n" << all;
    ++checked;
  }
  EXPECT_GE(checked, 4);
}
