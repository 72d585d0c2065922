#include "tessera/target/exchange/bsp_plan.hpp"

#include <utility>

#include "../plan_json.hpp"
#include "tessera/compiler/routing.hpp"

namespace tessera::program {

namespace {

constexpr const char* kFormat = "tessera-bsp-plan";
constexpr int64_t kVersion = 2;  // 2: routing, the experts superstep

constexpr std::pair<const char*, double BspWork::*> kWorkFields[] = {{"macs", &BspWork::macs},
                                                                     {"ops", &BspWork::ops},
                                                                     {"sram_bytes", &BspWork::sram_bytes},
                                                                     {"exchange_bytes", &BspWork::exchange_bytes}};
constexpr std::pair<const char*, BspWork Superstep::*> kWorks[] = {
    {"tile", &Superstep::tile},
    {"tile_per_position", &Superstep::tile_per_position},
    {"total", &Superstep::total},
    {"total_per_position", &Superstep::total_per_position}};
constexpr std::pair<const char*, int64_t BspPlan::*> kPlanIntegers[] = {
    {"prompt_tokens", &BspPlan::prompt_tokens},
    {"max_new_tokens", &BspPlan::max_new_tokens},
    {"batch", &BspPlan::batch},
    {"layers", &BspPlan::layers},
    {"prefill_chunk_tokens", &BspPlan::prefill_chunk_tokens}};
constexpr std::pair<const char*, double BspPlan::*> kPlanNumbers[] = {
    {"weight_bytes", &BspPlan::weight_bytes},
    {"kv_cache_bytes", &BspPlan::kv_cache_bytes},
    {"activation_bytes", &BspPlan::activation_bytes},
    {"chip_weight_bytes", &BspPlan::chip_weight_bytes}};

}  // namespace

std::string to_json(const BspPlan& p) {
  json doc = plan_json(kFormat, kVersion, p);
  doc["embedding"] = p.embedding, doc["lm_head"] = p.lm_head, doc["routing"] = p.routing;
  for (const auto& [key, field] : kPlanIntegers) doc[key] = p.*field;
  for (const auto& [key, field] : kPlanNumbers) doc[key] = p.*field;
  for (const auto& [phase, steps] : {std::pair{"prefill", &p.prefill}, std::pair{"decode", &p.decode}}) {
    json list = json::array();
    for (const Superstep& st : *steps) {
      json j = {{"name", st.name},
                {"op", st.op},
                {"sync", st.sync},
                {"last_chunk_only", st.last_chunk_only},
                {"tiles", st.tiles},
                {"k_parts", st.k_parts},
                {"position_parts", st.position_parts}};
      for (const auto& [key, work] : kWorks) {
        json w;
        for (const auto& [field_key, field] : kWorkFields) w[field_key] = (st.*work).*field;
        j[key] = w;
      }
      list.push_back(j);
    }
    doc[phase] = list;
  }
  return doc.dump(1) + "\n";
}

BspPlan bsp_plan_from_json(const std::string& text, const std::string& origin) {
  BspPlan p;
  const json doc = read_plan(text, origin, kFormat, kVersion, p);
  const Reader r{doc, origin};
  p.embedding = r.flag("embedding"), p.lm_head = r.flag("lm_head");
  p.routing = r.string("routing");
  if (!p.routing.empty()) compiler::parse_routing(p.routing);
  for (const auto& [key, field] : kPlanIntegers) p.*field = r.integer(key);
  for (const auto& [key, field] : kPlanNumbers) p.*field = r.number(key);
  if (p.prompt_tokens < 1 || p.max_new_tokens < 0 || p.batch < 1 || p.prefill_chunk_tokens < 1 || p.layers < 0)
    fail("{}: inconsistent counts (prompt {}, new tokens {}, batch {}, chunk {}, layers {})", origin, p.prompt_tokens,
         p.max_new_tokens, p.batch, p.prefill_chunk_tokens, p.layers);
  check_plan_request(origin, p.model_yaml, p.model_origin, p.prompt_tokens, p.max_new_tokens, p.batch);
  for (const auto& [phase, steps] : {std::pair{"prefill", &p.prefill}, std::pair{"decode", &p.decode}}) {
    const json& list = r.array(phase);
    for (size_t i = 0; i < list.size(); ++i) {
      const Reader s{list[i], fmt::format("{}: {}[{}]", origin, phase, i)};
      Superstep st;
      st.name = s.string("name"), st.op = s.string("op");
      st.sync = s.flag("sync"), st.last_chunk_only = s.flag("last_chunk_only");
      st.tiles = s.integer("tiles");
      st.k_parts = s.integer("k_parts"), st.position_parts = s.integer("position_parts");
      if (st.tiles < 0 || st.k_parts < 1 || st.position_parts < 1)
        fail("{}: tiles must be >= 0, k_parts and position_parts >= 1", s.where);
      for (const auto& [key, work] : kWorks) {
        const Reader w{s.at(key), s.where + "." + key};
        for (const auto& [field_key, field] : kWorkFields) {
          (st.*work).*field = w.number(field_key);
          if ((st.*work).*field < 0) fail("{}: field '{}' must be >= 0", w.where, field_key);
        }
      }
      steps->push_back(st);
    }
  }
  return p;
}

}  // namespace tessera::program
