// JSON helpers shared by the plan formats (program.cpp, gpu_plan.cpp, bsp_plan.cpp): strict
// field access that names the file and the path, and the precision policy's fields.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "tessera/base/error.hpp"
#include "tessera/base/precision.hpp"
#include "tessera/ir/model_config.hpp"

namespace tessera::program {

using nlohmann::json;

// Strict field access: every read names the file and the JSON path.
struct Reader {
  const json& j;
  std::string where;

  const json& at(const std::string& key) const {
    if (!j.is_object() || !j.contains(key)) fail("{}: missing field '{}'", where, key);
    return j.at(key);
  }
  int64_t integer(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_number_integer()) fail("{}: field '{}' must be an integer", where, key);
    return v.get<int64_t>();
  }
  std::string string(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_string()) fail("{}: field '{}' must be a string", where, key);
    return v.get<std::string>();
  }
  double number(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_number()) fail("{}: field '{}' must be a number", where, key);
    return v.get<double>();
  }
  bool flag(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_boolean()) fail("{}: field '{}' must be true or false", where, key);
    return v.get<bool>();
  }
  const json& array(const std::string& key) const {
    const json& v = at(key);
    if (!v.is_array()) fail("{}: field '{}' must be a list", where, key);
    return v;
  }
};

inline json precision_json(const PrecisionPolicy& p, double weight_bits, bool skip_weight_zeros) {
  return {{"weights", p.weights},
          {"scales", p.scales},
          {"group", p.group},
          {"activations", p.activations},
          {"kv", p.kv},
          {"prune", p.prune},
          {"weight_bits", weight_bits},
          {"skip_weight_zeros", skip_weight_zeros}};
}

// Throws Error naming the field on a policy that is not valid.
inline PrecisionPolicy parse_precision(const Reader& r) {
  PrecisionPolicy p;
  p.weights = r.string("weights");
  p.scales = r.string("scales");
  p.group = r.integer("group");
  p.activations = r.string("activations");
  p.kv = r.string("kv");
  p.prune = r.string("prune");
  try {
    p.validate();
  } catch (const Error& e) {
    fail("{}: {}", r.where, e.what());
  }
  return p;
}

// The fields every plan carries (Program, GpuPlan, BspPlan): format and version, the arch and
// model descriptions it was compiled for, and its precision.
template <typename Plan>
json plan_json(const char* format, int64_t version, const Plan& p) {
  return {{"format", format},
          {"version", version},
          {"arch", {{"origin", p.arch_origin}, {"yaml", p.arch_yaml}}},
          {"model", {{"origin", p.model_origin}, {"yaml", p.model_yaml}}},
          {"precision", precision_json(p.precision, p.weight_bits, p.skip_weight_zeros)}};
}

// Parses `text` as a plan of `format` at `version` and reads the fields every plan carries into
// `p`; returns the document for the rest. Throws Error naming `origin` and the field.
template <typename Plan>
json read_plan(const std::string& text, const std::string& origin, const char* format, int64_t version, Plan& p) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) fail("{}: not valid JSON", origin);
  if (!doc.is_object() || !doc.contains("format") || doc["format"] != format)
    fail("{}: not a tessera plan ({} expected; write one with `tessera compile --arch ARCH -o plan.json`)", origin,
         format);
  const Reader r{doc, origin};
  if (r.integer("version") != version)
    fail("{}: plan format version {} is not supported (this tessera reads version {}); recompile it", origin,
         r.integer("version"), version);
  const Reader arch{r.at("arch"), origin + ": arch"}, model{r.at("model"), origin + ": model"};
  p.arch_yaml = arch.string("yaml"), p.arch_origin = arch.string("origin");
  p.model_yaml = model.string("yaml"), p.model_origin = model.string("origin");
  const Reader precision{r.at("precision"), origin + ": precision"};
  p.precision = parse_precision(precision);
  p.weight_bits = precision.number("weight_bits");
  p.skip_weight_zeros = precision.flag("skip_weight_zeros");
  return doc;
}

// A plan's request must be one its model could serve: the prompt and the new tokens within the
// embedded model's context, and a batch no system holds more of (plan files are untrusted input;
// a hand-edited count of 10^15 would otherwise be simulated pass by pass).
inline void check_plan_request(const std::string& origin, const std::string& model_yaml,
                               const std::string& model_origin, int64_t prompt_tokens, int64_t max_new_tokens,
                               int64_t batch) {
  constexpr int64_t kMaxBatch = int64_t{1} << 20;
  const int64_t context = ir::parse_model_config(model_yaml, model_origin).context_length;
  if (prompt_tokens < 1 || max_new_tokens < 0 || prompt_tokens > context || max_new_tokens > context - prompt_tokens)
    fail("{}: {} prompt + {} new tokens do not fit the model's context of {} tokens", origin, prompt_tokens,
         max_new_tokens, context);
  if (batch < 1 || batch > kMaxBatch) fail("{}: batch {} is outside 1..{}", origin, batch, kMaxBatch);
}

}  // namespace tessera::program
