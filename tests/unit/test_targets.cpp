// Every preset in configs/arch/ (found by listing the directory, so a new preset file is covered
// without editing this test) through the Target interface: it loads by its fabric, compiles the
// default model or says structurally why not, simulates to sane figures, its plan file comes back
// through the format-dispatching loader with the same figures, and its executor computes the
// reference's greedy tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tessera/base/fs.hpp"
#include "tessera/ir/builders.hpp"
#include "tessera/model/weights.hpp"
#include "tessera/ref/executor.hpp"
#include "tessera/ref/generate.hpp"
#include "tessera/target/registry.hpp"
#include "test_util.hpp"

using namespace tessera;

namespace {

target::ModelSource default_model() {
  const std::string path = TESSERA_SOURCE_DIR "/models/default/config.yaml";
  const std::string yaml = read_text_file(path);
  return {ir::parse_model_config(yaml, path, TESSERA_SOURCE_DIR "/models/default"), yaml, path};
}

// The first uniform policy the target supports, widest first.
PrecisionPolicy supported_policy(const target::Target& t) {
  for (const char* format : {"fp32", "fp16", "bf16", "fp8_e4m3"})
    if (t.supports(PrecisionPolicy::uniform(format))) return PrecisionPolicy::uniform(format);
  ADD_FAILURE() << t.arch().name << " supports no uniform policy";
  return {};
}

template <typename Executor>
std::vector<int32_t> greedy(Executor& executor, const std::vector<int32_t>& prompt, int64_t tokens) {
  ref::GenerationOptions options;
  options.max_new_tokens = tokens;
  return ref::generate(executor, prompt, options).tokens;
}

}  // namespace

TEST(Targets, EveryPresetRunsThroughTheTargetInterface) {
  const auto files = tessera::testing::arch_presets();
  ASSERT_GE(files.size(), 9u);
  const target::ModelSource model = default_model();
  const ir::Graph graph = ir::build_model_graph(model.config);
  const model::Weights weights = model::load_weights(graph, *model.config.weights_path);
  const std::vector<int32_t> prompt = {464, 318, 257, 1303, 286, 11, 326};
  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    const auto t = target::load_target(file);
    bool registered = false;
    for (const auto& info : target::targets()) registered = registered || t->arch().fabric == info.fabric;
    EXPECT_TRUE(registered);
    const PrecisionPolicy policy = supported_policy(*t);
    const target::ChipWork work{
        .prompt_tokens = static_cast<int64_t>(prompt.size()), .max_new_tokens = 6, .precision = policy};
    const auto compiled = t->compile(model, work);
    if (!compiled.status) {
      const compiler::FitFailure& f = compiled.status.failure();
      EXPECT_GT(f.needed, f.available) << compiled.status.message();
      EXPECT_FALSE(f.resource.empty());
      continue;
    }
    const target::RunReport run = t->simulate(*compiled.plan);
    EXPECT_GT(run.time_to_first_token_s, 0);
    EXPECT_GT(run.tokens_per_s_per_user, 0);
    EXPECT_GT(run.energy_per_token_pj, 0);
    EXPECT_GT(run.utilization, 0);
    EXPECT_LE(run.utilization, 1);
    EXPECT_GE(run.decode_step_s, run.decode_interval_s);
    EXPECT_FALSE(run.bound.empty());
    // The plan file comes back through the loader that reads its format field.
    const target::LoadedPlan loaded = target::load_plan(compiled.plan->to_json(), "plan.json");
    EXPECT_EQ(loaded.target->arch().name, t->arch().name);
    const target::RunReport again = loaded.target->simulate(*loaded.plan);
    EXPECT_EQ(again.time_to_first_token_s, run.time_to_first_token_s);
    EXPECT_EQ(again.tokens_per_s_per_user, run.tokens_per_s_per_user);
    // Values: the target's executor against the reference under the same policy.
    if (policy.weights != "fp32") continue;
    const auto executor = t->executor(*compiled.plan, graph, weights, model.config.context_length);
    ref::ReferenceExecutor reference(graph, weights, model.config.context_length, policy);
    EXPECT_EQ(greedy(*executor, prompt, 6), greedy(reference, prompt, 6));
  }
}

TEST(Targets, PlansAreLoadedByTheirFormatField) {
  using tessera::testing::error_of;
  EXPECT_NE(error_of([] { target::load_plan("{\"format\": \"tessera-tpu-plan\"}", "p.json"); })
                .find("p.json: not a tessera plan (its format is none of tessera-mesh-plan, tessera-bsp-plan, "
                      "tessera-gpu-plan"),
            std::string::npos);
  EXPECT_NE(error_of([] { target::load_plan("[1, 2", "p.json"); }).find("p.json: not valid JSON"), std::string::npos);
  // A note that mentions a format is not a plan: the field is read, not searched for.
  EXPECT_NE(error_of([] {
              target::load_plan("{\"note\": \"\\\"format\\\": \\\"tessera-gpu-plan\\\"\"}", "p.json");
            }).find("not a tessera plan"),
            std::string::npos);
  EXPECT_NE(error_of([] { target::load_plan("{\"format\": \"tessera-gpu-plan\"}", "p.json"); }).find("arch.yaml"),
            std::string::npos);
}

// Plan files are untrusted: counts no model could serve are refused before anything is simulated.
TEST(Targets, PlansWithImpossibleRequestsAreRefused) {
  const target::ModelSource model = default_model();
  for (const char* arch : {"mesh-32x32", "gc200", "h100"}) {
    const auto t = target::load_target(std::string(TESSERA_SOURCE_DIR) + "/configs/arch/" + arch + ".yaml");
    const auto compiled =
        t->compile(model, {.prompt_tokens = 8, .max_new_tokens = 8, .precision = supported_policy(*t)});
    ASSERT_TRUE(compiled.status) << arch;
    auto doc = nlohmann::json::parse(compiled.plan->to_json());
    doc["max_new_tokens"] = int64_t{1000000000000000};
    EXPECT_NE(tessera::testing::error_of([&] {
                target::load_plan(doc.dump(), "p.json");
              }).find("do not fit the model's context of 256 tokens"),
              std::string::npos)
        << arch;
    doc["max_new_tokens"] = 8;
    doc["batch"] = int64_t{1} << 40;
    EXPECT_NE(tessera::testing::error_of([&] { target::load_plan(doc.dump(), "p.json"); }).find("batch"),
              std::string::npos)
        << arch;
  }
}

TEST(Targets, CapabilitiesDecideWhatASystemMayDo) {
  const auto wafer = target::load_target(TESSERA_SOURCE_DIR "/configs/arch/wse3.yaml");
  const auto ipu = target::load_target(TESSERA_SOURCE_DIR "/configs/arch/gc200.yaml");
  const auto gpu = target::load_target(TESSERA_SOURCE_DIR "/configs/arch/h100.yaml");
  EXPECT_TRUE(wafer->capabilities().pipeline && !wafer->capabilities().batches_requests &&
              wafer->capabilities().data_plane);
  EXPECT_TRUE(ipu->capabilities().pipeline && ipu->capabilities().head_groups && ipu->capabilities().batches_requests);
  EXPECT_TRUE(gpu->capabilities().tensor_parallel && !gpu->capabilities().pipeline);
  const target::ModelSource model = default_model();
  EXPECT_NE(tessera::testing::error_of([&] {
              wafer->compile(model, {.prompt_tokens = 8, .max_new_tokens = 8, .tensor_parallel = 2});
            }).find("do not split layers"),
            std::string::npos);
  EXPECT_NE(tessera::testing::error_of([&] {
              gpu->compile(model, {.prompt_tokens = 8,
                                   .max_new_tokens = 8,
                                   .precision = PrecisionPolicy::uniform("fp16"),
                                   .slice = {2, true, false}});
            }).find("not pipeline slices"),
            std::string::npos);
}
