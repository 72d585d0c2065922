#include "tessera/target/mesh2d/program.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <utility>

#include "../plan_json.hpp"
#include "tessera/compiler/routing.hpp"
#include "tessera/target/arch.hpp"

namespace tessera::program {

namespace {

constexpr std::array<const char*, 6> kPatternNames = {"none",           "allreduce_x", "allreduce_y",
                                                      "stage_transfer", "host_in",     "host_out"};
constexpr const char* kFormat = "tessera-mesh-plan";
// 2: a precision policy replaces weight_dtype; 3: batch and slice; 4: step kernels; 5: routing, experts;
// 6: vector instructions per step; 7: segmented allreduces
constexpr int kFormatVersion = 7;

Pattern parse_pattern(const std::string& name, const std::string& where) {
  for (size_t i = 0; i < kPatternNames.size(); ++i)
    if (name == kPatternNames[i]) return static_cast<Pattern>(i);
  fail("{}: unknown communication pattern '{}'", where, name);
}

using nlohmann::json;

json region_json(const arch::Region& r) { return {{"x", r.x}, {"y", r.y}, {"width", r.width}, {"height", r.height}}; }

// The Step fields of each type, named once for writing and reading.
constexpr std::pair<const char*, int64_t Step::*> kStepIntegers[] = {
    {"macs", &Step::macs},
    {"macs_per_slot", &Step::macs_per_slot},
    {"elementwise", &Step::elementwise},
    {"elementwise_per_slot", &Step::elementwise_per_slot},
    {"vector_ops", &Step::vector_ops},
    {"vector_ops_per_slot", &Step::vector_ops_per_slot},
    {"sram_bytes", &Step::sram_bytes},
    {"sram_bytes_per_slot", &Step::sram_bytes_per_slot},
    {"total_macs", &Step::total_macs},
    {"total_macs_per_slot", &Step::total_macs_per_slot},
    {"words", &Step::words},
    {"words_per_slot", &Step::words_per_slot},
    {"host_bytes", &Step::host_bytes}};
constexpr std::pair<const char*, int32_t Step::*> kStepSmallIntegers[] = {
    {"stage", &Step::stage}, {"group", &Step::group}, {"to_stage", &Step::to_stage}};
constexpr std::pair<const char*, bool Step::*> kStepFlags[] = {{"last_chunk_only", &Step::last_chunk_only},
                                                               {"overlap", &Step::overlap}};

json step_json(const Step& s) {
  json j = {
      {"name", s.name}, {"op", s.op}, {"kernel", s.kernel}, {"node", s.node}, {"pattern", pattern_name(s.pattern)}};
  for (const auto& [key, field] : kStepIntegers) j[key] = s.*field;
  for (const auto& [key, field] : kStepSmallIntegers) j[key] = s.*field;
  for (const auto& [key, field] : kStepFlags) j[key] = s.*field;
  j["segments"] = s.segments;
  return j;
}

// The data plane's kernels (Step::kernel).
constexpr const char* kKernels[] = {"layernorm.mean",
                                    "layernorm.variance",
                                    "rmsnorm",
                                    "projection",
                                    "rope",
                                    "attention.scores",
                                    "attention.max",
                                    "attention.sum",
                                    "attention.values",
                                    "add",
                                    "mul",
                                    "activation",
                                    "experts.route",
                                    "experts.gate_up",
                                    "experts.activation",
                                    "experts.down"};

Step parse_step(const json& j, const std::string& where) {
  const Reader r{j, where};
  Step s;
  s.name = r.string("name");
  s.op = r.string("op");
  s.kernel = r.string("kernel");
  s.node = r.string("node");
  s.pattern = parse_pattern(r.string("pattern"), where);
  for (const auto& [key, field] : kStepIntegers) s.*field = r.integer(key);
  for (const auto& [key, field] : kStepSmallIntegers) {
    const int64_t v = r.integer(key);
    if (v < INT32_MIN || v > INT32_MAX) fail("{}: field '{}' is out of range: {}", where, key, v);
    s.*field = static_cast<int32_t>(v);
  }
  for (const auto& [key, field] : kStepFlags) s.*field = r.flag(key);
  const json& segments = r.array("segments");
  for (size_t i = 0; i < segments.size(); ++i) {
    const json& span = segments[i];
    if (!span.is_array() || span.size() != 2 || !span[0].is_number_integer() || !span[1].is_number_integer())
      fail("{}: segments[{}] must be [first, last], two whole numbers", where, i);
    const int64_t first = span[0].get<int64_t>(), last = span[1].get<int64_t>();
    if (first < 0 || last < first || last > INT32_MAX)
      fail("{}: segments[{}] = [{}, {}] is not a span of positions (0 <= first <= last)", where, i, first, last);
    s.segments.push_back({static_cast<int32_t>(first), static_cast<int32_t>(last)});
  }
  return s;
}

}  // namespace

const char* pattern_name(Pattern p) { return kPatternNames.at(static_cast<size_t>(p)); }

int64_t segments_signature(const Step& s) {
  uint64_t h = 0;
  for (const auto& [first, last] : s.segments)
    h = (h * 1000003 + static_cast<uint64_t>(first) + 1) * 1000003 + static_cast<uint64_t>(last) + 1;
  return static_cast<int64_t>(h);
}

std::string to_json(const Program& p) {
  json stages = json::array();
  for (const Stage& s : p.stages)
    stages.push_back({{"name", s.name},
                      {"region", region_json(s.region)},
                      {"weight_bytes", s.weight_bytes},
                      {"kv_cache_bytes", s.kv_cache_bytes},
                      {"activation_bytes", s.activation_bytes},
                      {"routes", s.routes},
                      {"context_split", s.context_split},
                      {"total_weight_bytes", s.total_weight_bytes}});
  json prefill = json::array(), decode = json::array();
  for (const Step& s : p.prefill) prefill.push_back(step_json(s));
  for (const Step& s : p.decode) decode.push_back(step_json(s));
  json doc = plan_json(kFormat, kFormatVersion, p);
  doc["prompt_tokens"] = p.prompt_tokens;
  doc["max_new_tokens"] = p.max_new_tokens;
  doc["max_context"] = p.max_context;
  doc["prefill_chunk_tokens"] = p.prefill_chunk_tokens;
  doc["batch"] = p.batch;
  doc["slice"] = {{"layers", p.layers}, {"embedding", p.embedding}, {"lm_head", p.lm_head}};
  doc["routing"] = p.routing;
  doc["stages"] = stages;
  doc["prefill"] = prefill;
  doc["decode"] = decode;
  doc["precision"]["skip_zero_activations"] = p.skip_zero_activations;
  return doc.dump(1) + "\n";
}

Program from_json(const std::string& text, const std::string& origin) {
  Program p;
  const json doc = read_plan(text, origin, kFormat, kFormatVersion, p);
  const Reader r{doc, origin};
  const Reader precision{r.at("precision"), origin + ": precision"};
  p.skip_zero_activations = precision.flag("skip_zero_activations");
  p.prompt_tokens = r.integer("prompt_tokens");
  p.max_new_tokens = r.integer("max_new_tokens");
  p.max_context = r.integer("max_context");
  p.prefill_chunk_tokens = r.integer("prefill_chunk_tokens");
  if (p.prefill_chunk_tokens < 1 || p.prompt_tokens < 1 || p.max_context < p.prompt_tokens)
    fail("{}: inconsistent token counts (prompt {}, chunk {}, context {})", origin, p.prompt_tokens,
         p.prefill_chunk_tokens, p.max_context);
  p.batch = r.integer("batch");
  const Reader slice{r.at("slice"), origin + ": slice"};
  p.layers = slice.integer("layers");
  p.embedding = slice.flag("embedding");
  p.lm_head = slice.flag("lm_head");
  p.routing = r.string("routing");
  if (!p.routing.empty()) compiler::parse_routing(p.routing);
  if (p.batch < 1 || p.layers < 1) fail("{}: batch and slice.layers must be >= 1", origin);
  check_plan_request(origin, p.model_yaml, p.model_origin, p.prompt_tokens, p.max_new_tokens, p.batch);
  // Regions must lie in the usable rectangle of the plan's own arch (a hand-edited plan is
  // refused here, naming the stage, not deep inside the fabric model).
  const arch::ArchSpec arch = target::parse_arch(p.arch_yaml, p.arch_origin);
  const arch::Region& u = arch.usable;
  const json& stages = r.array("stages");
  for (size_t i = 0; i < stages.size(); ++i) {
    const Reader s{stages[i], fmt::format("{}: stages[{}]", origin, i)};
    const Reader reg{s.at("region"), s.where + ".region"};
    p.stages.push_back({s.string("name"),
                        {reg.integer("x"), reg.integer("y"), reg.integer("width"), reg.integer("height")},
                        s.integer("weight_bytes"),
                        s.integer("kv_cache_bytes"),
                        s.integer("activation_bytes"),
                        s.integer("routes"),
                        s.integer("context_split"),
                        s.integer("total_weight_bytes")});
    const arch::Region& g = p.stages.back().region;
    if (g.width < 1 || g.height < 1 || g.x < u.x || g.y < u.y || g.x - u.x > u.width - g.width ||
        g.y - u.y > u.height - g.height)
      fail("{}: a {}x{} region at ({}, {}) is not inside {}'s usable {}x{} cores at ({}, {})", reg.where, g.width,
           g.height, g.x, g.y, arch.name, u.width, u.height, u.x, u.y);
    if (p.stages.back().context_split < 1) fail("{}: context_split must be >= 1", s.where);
    for (size_t j = 0; j < i; ++j) {
      const arch::Region& o = p.stages[j].region;
      const bool same = o == g;
      const bool apart = o.x + o.width <= g.x || g.x + g.width <= o.x || o.y + o.height <= g.y || g.y + g.height <= o.y;
      if (!same && !apart)
        fail(
            "{}: its region overlaps stages[{}]'s ('{}') without being the same cores; stages either share a "
            "region exactly or lie apart",
            reg.where, j, p.stages[j].name);
    }
  }
  for (const char* phase : {"prefill", "decode"}) {
    const json& steps = r.array(phase);
    auto& out = std::string(phase) == "prefill" ? p.prefill : p.decode;
    for (size_t i = 0; i < steps.size(); ++i) {
      out.push_back(parse_step(steps[i], fmt::format("{}: {}[{}]", origin, phase, i)));
      const Step& s = out.back();
      if (!s.kernel.empty() && std::find(std::begin(kKernels), std::end(kKernels), s.kernel) == std::end(kKernels))
        fail("{}: {}[{}] names kernel '{}', which the mesh data plane does not have", origin, phase, i, s.kernel);
      if (s.stage < 0 || static_cast<size_t>(s.stage) >= p.stages.size() ||
          (s.pattern == Pattern::StageTransfer &&
           (s.to_stage < 0 || static_cast<size_t>(s.to_stage) >= p.stages.size())))
        fail("{}: {}[{}] refers to a stage that does not exist", origin, phase, i);
      if (!s.segments.empty()) {
        const arch::Region& reg = p.stages[static_cast<size_t>(s.stage)].region;
        if (s.pattern != Pattern::AllreduceX && s.pattern != Pattern::AllreduceY)
          fail("{}: {}[{}] has segments but is not an allreduce", origin, phase, i);
        const int64_t line = s.pattern == Pattern::AllreduceX ? reg.width : reg.height;
        for (const auto& [first, last] : s.segments)
          if (last >= line)
            fail("{}: {}[{}]'s segment [{}, {}] runs past its stage's lines of {} cores", origin, phase, i, first, last,
                 line);
      }
    }
  }
  return p;
}

std::vector<size_t> region_owners(const Program& plan) {
  std::vector<size_t> owner(plan.stages.size());
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    owner[i] = i;
    for (size_t j = 0; j < i; ++j)
      if (plan.stages[j].region == plan.stages[i].region) {
        owner[i] = owner[j];
        break;
      }
  }
  return owner;
}

std::vector<int64_t> region_bytes_per_core(const Program& plan) {
  const std::vector<size_t> owner = region_owners(plan);
  std::vector<int64_t> owned(plan.stages.size(), 0), out(plan.stages.size());
  for (size_t i = 0; i < plan.stages.size(); ++i) owned[owner[i]] += plan.stages[i].bytes_per_core();
  for (size_t i = 0; i < plan.stages.size(); ++i) out[i] = owned[owner[i]];
  return out;
}

std::string placement_table(const program::Program& plan) {
  std::string out = fmt::format("{:<10} {:>17} {:>9} {:>10} {:>10} {:>10} {:>10}\n", "stage", "region (x,y wxh)",
                                "cores", "weights", "KV cache", "activ.", "KiB/core");
  const std::vector<int64_t> held = region_bytes_per_core(plan);
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const Stage& s = plan.stages[i];
    out += fmt::format("{:<10} {:>17} {:>9} {:>9.1f}K {:>9.1f}K {:>9.1f}K {:>10.1f}\n", s.name,
                       fmt::format("{},{} {}x{}", s.region.x, s.region.y, s.region.width, s.region.height),
                       s.region.cores(), static_cast<double>(s.weight_bytes) / 1024,
                       static_cast<double>(s.kv_cache_bytes) / 1024, static_cast<double>(s.activation_bytes) / 1024,
                       static_cast<double>(held[i]) / 1024);
  }
  out += fmt::format("prefill in chunks of {} tokens; {} prefill steps per chunk, {} decode steps per token\n",
                     plan.prefill_chunk_tokens, plan.prefill.size(), plan.decode.size());
  return out;
}

}  // namespace tessera::program
