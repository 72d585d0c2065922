#include "tessera/arch/units.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <map>
#include <string>

#include "tessera/base/error.hpp"

namespace tessera::arch {

namespace {

struct Quantity {
  double value;
  std::string unit;
};

Quantity split(std::string_view text, const std::string& where, const char* example) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data())
    fail("{}: expected a number with a unit like '{}', got '{}'", where, example, text);
  std::string unit(end, text.data() + text.size());
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front()))) unit.erase(0, 1);
  if (!std::isfinite(value)) fail("{}: value must be finite, got '{}'", where, text);
  if (value < 0) fail("{}: value must be >= 0, got '{}'", where, text);
  if (unit.empty()) fail("{}: '{}' has no unit; write it like '{}'", where, text, example);
  return {value, unit};
}

double scaled(std::string_view text, const std::string& where, const char* example,
              const std::map<std::string, double>& units) {
  const Quantity q = split(text, where, example);
  const auto it = units.find(q.unit);
  if (it == units.end()) {
    std::string known;
    for (const auto& [name, _] : units) known += (known.empty() ? "" : ", ") + name;
    fail("{}: unknown unit '{}' in '{}'; expected one of: {}", where, q.unit, text, known);
  }
  return q.value * it->second;
}

}  // namespace

double parse_bytes(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"B", 1},         {"KB", 1e3},         {"MB", 1e6},
                                                      {"GB", 1e9},      {"TB", 1e12},        {"KiB", 1024},
                                                      {"MiB", 1 << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
  return scaled(text, where, "48KiB", units);
}

double parse_frequency_hz(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"Hz", 1}, {"kHz", 1e3}, {"MHz", 1e6}, {"GHz", 1e9}};
  return scaled(text, where, "1.1GHz", units);
}

double parse_bytes_per_second(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"B/s", 1},        {"KB/s", 1e3},      {"MB/s", 1e6},
                                                      {"GB/s", 1e9},     {"TB/s", 1e12},     {"PB/s", 1e15},
                                                      {"b/s", 1.0 / 8},  {"Kb/s", 1e3 / 8},  {"Mb/s", 1e6 / 8},
                                                      {"Gb/s", 1e9 / 8}, {"Tb/s", 1e12 / 8}, {"Pb/s", 1e15 / 8}};
  return scaled(text, where, "150GB/s", units);
}

double parse_bytes_per_cycle(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"B/cycle", 1}, {"bit/cycle", 1.0 / 8}};
  return scaled(text, where, "32bit/cycle", units);
}

double parse_cycles(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"cycle", 1}, {"cycles", 1}};
  return scaled(text, where, "2cycles", units);
}

double parse_energy_pj(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"fJ", 1e-3}, {"pJ", 1}, {"nJ", 1e3}};
  return scaled(text, where, "1.1pJ", units);
}

double parse_energy_pj_per_byte(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"fJ/B", 1e-3},   {"pJ/B", 1},   {"nJ/B", 1e3},
                                                      {"fJ/bit", 8e-3}, {"pJ/bit", 8}, {"nJ/bit", 8e3}};
  return scaled(text, where, "0.1pJ/bit", units);
}

double parse_seconds(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"ns", 1e-9}, {"us", 1e-6}, {"ms", 1e-3}, {"s", 1}};
  return scaled(text, where, "5us", units);
}

double parse_watts(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"W", 1}, {"kW", 1e3}};
  return scaled(text, where, "700W", units);
}

double parse_area_mm2(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"um2", 1e-6}, {"mm2", 1}};
  return scaled(text, where, "38000um2", units);
}

double parse_area_mm2_per_byte(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {
      {"um2/B", 1e-6}, {"um2/KiB", 1e-6 / 1024}, {"um2/MiB", 1e-6 / (1 << 20)},
      {"mm2/B", 1},    {"mm2/KiB", 1.0 / 1024},  {"mm2/MiB", 1.0 / (1 << 20)}};
  return scaled(text, where, "396um2/KiB", units);
}

double parse_watts_per_mm2(std::string_view text, const std::string& where) {
  static const std::map<std::string, double> units = {{"mW/mm2", 1e-3}, {"W/mm2", 1}};
  return scaled(text, where, "20mW/mm2", units);
}

}  // namespace tessera::arch
