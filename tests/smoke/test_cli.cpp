// End-to-end: the CLI a user runs, its output and its exit codes on good and bad input.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/core.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

namespace {

struct Result {
  int exit_code;
  std::string output;  // stdout, then stderr
  std::string stdout_text;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Runs the CLI; stderr (errors, progress lines that depend on wall time) is kept apart so that
// tests comparing outputs compare stdout only.
Result tessera(const std::string& args) {
  std::string err = (std::filesystem::temp_directory_path() / "tessera_smoke_stderr_XXXXXX").string();
  const int fd = mkstemp(err.data());
  EXPECT_GE(fd, 0);
  close(fd);
  const std::string command = std::string(TESSERA_CLI) + " " + args + " 2>" + err;
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  const std::string errors = read_all(err);
  std::filesystem::remove(err);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output + errors, output};
}

std::string temp_file(const std::string& name, const std::string& contents) {
  const auto path = std::filesystem::temp_directory_path() / ("tessera_smoke_" + name);
  std::ofstream(path, std::ios::binary) << contents;
  return path.string();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Whether a table row with these cells appears: `cells` separated by single spaces matches the
// output with every run of spaces taken as one.
bool has_row(const std::string& output, const std::string& cells) {
  std::string squeezed;
  for (const char c : output)
    if (c != ' ' || squeezed.empty() || squeezed.back() != ' ') squeezed += c;
  return contains(squeezed, cells);
}

}  // namespace

TEST(Cli, RunGeneratesTextOnTheDefaultWafer) {
  const Result r = tessera("run -n 24 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "It is a truth universally acknowledged, that")) << r.output;
  EXPECT_TRUE(contains(r.output, "default on wse2 (simulated, fast fabric model;")) << r.output;
  EXPECT_TRUE(contains(r.output, "precision            weights fp32, activations fp32, kv fp32; 32 bits")) << r.output;
  EXPECT_TRUE(contains(r.output, "tokens/s per user (24 generated tokens)")) << r.output;
  EXPECT_EQ(tessera("run -n 24 --seed 3").stdout_text.substr(0, 200), r.stdout_text.substr(0, 200)) << "deterministic";
  // The wafer computes the same values as the host reference, so sampling picks the same text.
  const Result host = tessera("run -n 24 --seed 3 --arch host");
  ASSERT_EQ(host.exit_code, 0) << host.output;
  EXPECT_EQ(host.stdout_text.substr(0, host.stdout_text.find("\n\n[")),
            r.stdout_text.substr(0, r.stdout_text.find("\n\ndefault on")));
  EXPECT_TRUE(contains(host.output, "24 generated")) << host.output;
}

TEST(Cli, GreedyRunIsReproducibleAndAcceptsNonAsciiPrompts) {
  const Result a = tessera("run --arch host -n 8 -t 0 -p 'Caf\xc3\xa9 \xe2\x80\x94 \xff bytes'");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_TRUE(contains(a.output, "Caf\xc3\xa9 \xe2\x80\x94 \xff bytes")) << a.output;
}

TEST(Cli, ListsModelsAndArchs) {
  const Result models = tessera("models");
  ASSERT_EQ(models.exit_code, 0);
  EXPECT_TRUE(contains(models.output, "124,439,808")) << models.output;
  EXPECT_TRUE(contains(models.output, "8,030,261,248")) << models.output;
  EXPECT_TRUE(contains(models.output, "shipped")) << models.output;
  const Result archs = tessera("archs");
  ASSERT_EQ(archs.exit_code, 0);
  EXPECT_TRUE(contains(archs.output, "host")) << archs.output;
}

TEST(Cli, CompileEmitsVerifiedIr) {
  const Result r = tessera("compile --model llama3-8b --emit ir");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "8030261248 parameters")) << r.output.substr(0, 300);
  EXPECT_TRUE(contains(r.output, "param \"model.layers.31.mlp.down_proj.weight\"")) << r.output.substr(0, 300);
}

TEST(Cli, RandomWeightsRunForShapeOnlyModels) {
  const Result r = tessera("run --arch mesh-32x32 --weights random --seed 2 -n 3 -p hi");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "default on mesh-32x32")) << r.output;
  EXPECT_EQ(r.stdout_text.substr(0, r.stdout_text.find("\n\n")),
            tessera("run --arch host --weights random --seed 2 -n 3 -p hi")
                .stdout_text.substr(0, r.stdout_text.find("\n\n")));
  const Result mismatch = tessera("run --arch host -m " TESSERA_SOURCE_DIR
                                  "/tests/data/llama-tiny.yaml --weights random "
                                  "--tokenizer " TESSERA_SOURCE_DIR "/models/default -n 4 -p hi");
  EXPECT_NE(mismatch.exit_code, 0) << "the default tokenizer has 2048 tokens, the tiny llama only 512";
  EXPECT_TRUE(contains(mismatch.output, "vocab_size 512")) << mismatch.output;
}

struct BadInput {
  std::string args;
  std::string message;
};

TEST(Cli, BadInputsFailWithAOneLineReason) {
  const std::string unknown_key = temp_file("unknown.yaml",
                                            "name: x\nfamily: gpt2\nvocab_size: 10\n"
                                            "context_length: 8\nd_model: 16\nn_layers: 1\n"
                                            "n_heads: 2\nd_ff: 64\nnorm_eps: 1e-5\n"
                                            "tie_embeddings: true\nlayers: 3\n");
  const std::string wrong_type = temp_file("wrongtype.yaml", "name: x\nfamily: gpt2\nvocab_size: many\n");
  const std::string corrupt = temp_file("corrupt.safetensors", std::string("\x10\0\0\0\0\0\0\0{\"a\": [1,2", 17));
  const std::vector<BadInput> cases = {
      {"run --weights /nonexistent/w.safetensors", "cannot open weights file"},
      {"run --weights " + corrupt, "truncated"},
      {"run -m " + unknown_key, "key 'layers': unknown key"},
      {"run -m " + wrong_type, "key 'vocab_size': expected an integer, got 'many'"},
      {"run -n 5000", "exceed default's context of 256 tokens"},
      {"run --arch host -n 5000", "the model's context is 256"},
      {"run -m gpt2-small", "ships no tokenizer"},
      {"run -m gpt3", "unknown model 'gpt3'"},
      {"run -n -3", "--max-tokens: must be >= 0, got -3"},
      {"run -p \"\"  -t 0 -n 2 --weights /dev/null", "not a regular file"},
      {"frobnicate", "unknown command 'frobnicate'"},
      {"compile --emit mlir", "--emit mlir is not supported"},
  };
  for (const auto& c : cases) {
    const Result r = tessera(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_TRUE(contains(r.output, c.message)) << c.args << "\n" << r.output;
    EXPECT_FALSE(contains(r.output, "terminate called")) << c.args;
  }
}

TEST(Cli, CompileForAMeshThenSimulateThePlan) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string plan = (dir / "tessera_smoke_plan.json").string(),
                    metrics = (dir / "tessera_smoke_run.json").string();
  const Result c = tessera("compile --arch mesh-32x32 --prompt-tokens 12 -n 20 -o " + plan);
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_TRUE(contains(c.output, "lm_head")) << c.output;
  const Result s = tessera("simulate " + plan + " --json " + metrics);
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_TRUE(contains(s.output, "default on mesh-32x32")) << s.output;
  EXPECT_TRUE(contains(s.output, "tokens/s per user")) << s.output;
  std::ifstream in(metrics);
  const std::string json((std::istreambuf_iterator<char>(in)), {});
  for (const char* key :
       {"\"schema\": \"tessera-run/2\"", "\"time_to_first_token_s\"", "\"decode_tokens_per_s_per_user\"",
        "\"high_water_bytes_per_core\"", "\"energy_per_decode_token\"", "\"busiest_decode_steps\""})
    EXPECT_TRUE(contains(json, key)) << key;
}

TEST(Cli, TimingOnlyRunsForModelsWithoutWeights) {
  const Result r = tessera("run -m llama3-8b --arch wse3 --no-numerics --dtype fp16 --prompt-tokens 16 -n 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "llama3-8b on wse3 (simulated, fast fabric model;")) << r.output;
  EXPECT_TRUE(contains(r.output, "weights fp16, activations fp16, kv fp16; 16 bits per stored weight")) << r.output;
}

TEST(Cli, MeshErrorsAreOneLine) {
  const std::vector<BadInput> cases = {
      {"run --activations-format bf16",
       "wse2 does not support bf16 activations (its MACs take fp16, fp32); presets that support weights fp32, "
       "activations bf16, kv fp32: a100, h100, h200"},
      {"run --arch mesh-32x32 --dtype fp8_e4m3 -n 2", "mesh-32x32 does not support fp8_e4m3 activations"},
      {"run --arch wse9 --no-numerics", "unknown arch 'wse9'"},
      {"run -m llama3-70b --arch wse3 --no-numerics --dtype fp16 --prompt-tokens 8 -n 8", "does not fit on wse3"},
      {"run -m llama3-8b --arch wse3 --no-numerics --prompt-tokens 8 -n 8 --dtype fp8",
       "format 'fp8' is not one tessera knows"},
      {"compile --arch wse2", "needs -o PLAN.json"},
      {"simulate /nonexistent/plan.json", "cannot open"},
      {"simulate " TESSERA_SOURCE_DIR "/README.md", "not valid JSON"},
  };
  for (const auto& c : cases) {
    const Result r = tessera(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_TRUE(contains(r.output, c.message)) << c.args << "\n" << r.output;
  }
}

TEST(Cli, NeverOverwritesFilesItDidNotWrite) {
  const std::string notes = temp_file("notes.txt", "my notes\n");
  // A note that mentions tessera's formats, a CSV that starts like tessera's: still the user's.
  const std::string mentions =
      temp_file("mentions.json", "remember: \"schema\": \"tessera-run/2\" and \"format\": \"tessera-mesh-plan\"\n");
  const std::string json_note = temp_file("json-note.json", "{\"note\": \"\\\"schema\\\": \\\"tessera-run/2\\\"\"}\n");
  const std::string csv = temp_file("mine.csv", "kind,name,stage,pattern\n1,2,3,4\n");
  const auto dir = std::filesystem::temp_directory_path();
  const std::string plan = (dir / "tessera_smoke_own_plan.json").string();
  std::filesystem::remove(plan);
  ASSERT_EQ(tessera("compile --arch mesh-32x32 -o " + plan).exit_code, 0);
  const std::string plan_text = read_all(plan);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"run -n 2 --json " + notes, notes},
      {"compile --arch mesh-32x32 -o " + notes, notes},
      {"run -n 2 -q --json " + mentions, mentions},
      {"simulate " + plan + " --json " + json_note, json_note},
      {"run -n 2 -q --arch mesh-32x32 --csv " + csv, csv},
      {"compare --arch h100 --csv " + csv, csv},
      {"simulate " + plan + " --json " + plan, plan},
      {"run --arch mesh-32x32 -n 2 -q --json " + plan + " --csv " + plan, plan}};
  for (const auto& [args, file] : cases) {
    const std::string before = read_all(file);
    const Result r = tessera(args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_TRUE(contains(r.output, "(nothing was written)")) << args << "\n" << r.output;
    EXPECT_EQ(read_all(file), before) << args;
  }
  EXPECT_EQ(read_all(plan), plan_text);
  EXPECT_TRUE(contains(tessera("simulate " + plan + " --json " + plan).output, "is also an input of this command"));
  EXPECT_TRUE(contains(tessera("run -n 2 --json " + mentions).output, "exists and is not a file tessera wrote"));
  // `report R.json -o R.json` would replace its own input with HTML.
  const std::string run_json = (dir / "tessera_smoke_own_run.json").string();
  std::filesystem::remove(run_json);
  ASSERT_EQ(tessera("run -n 2 -q --arch mesh-32x32 --json " + run_json).exit_code, 0);
  const std::string run_text = read_all(run_json);
  const Result self = tessera("report " + run_json + " -o " + run_json);
  EXPECT_NE(self.exit_code, 0);
  EXPECT_TRUE(contains(self.output, "is also an input of this command")) << self.output;
  EXPECT_EQ(read_all(run_json), run_text);
}

TEST(Cli, OutputPathsThatCannotBeWrittenSafelyFailWithOneLine) {
  const auto dir = std::filesystem::temp_directory_path() / "tessera_smoke_paths";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::filesystem::create_symlink(dir / "missing" / "target.json", dir / "dangling.json");
  std::filesystem::create_symlink(dir / "loop-b", dir / "loop-a");
  std::filesystem::create_symlink(dir / "loop-a", dir / "loop-b");
  const std::string file = temp_file("plain.txt", "text\n");
  const std::string plan = (dir / "plan.json").string();
  ASSERT_EQ(tessera("compile --arch mesh-32x32 -o " + plan).exit_code, 0);
  const std::vector<std::pair<std::string, std::string>> paths = {
      {(dir / "dangling.json").string(), "is a symlink whose target does not exist"},
      {(dir / "loop-a").string(), "is a symlink in a loop"},
      {(dir / "loop-a" / "x.json").string(), "cannot be used"},
      {file + "/x.json", "tessera_smoke_plain.txt is not a directory"},
      {(dir / "no-such-dir" / "x.json").string(), "does not exist"},
      {dir.string(), "is a directory"},
      {"/dev/null", "is not a regular file"}};
  for (const auto& [path, message] : paths) {
    for (const std::string& args :
         {"run -n 2 -q --json " + path, "run -n 2 -q --trace " + path, "run -n 2 -q --csv " + path,
          "compile --arch wse2 -o " + path, "compare --arch h100 --json " + path, "compare --arch h100 --csv " + path,
          "simulate " + plan + " --json " + path, "simulate " + plan + " --trace " + path,
          "report " TESSERA_SOURCE_DIR "/README.md -o " + path}) {
      const Result r = tessera(args);
      EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
      EXPECT_TRUE(contains(r.output, message)) << args << "\n" << r.output;
      EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "missing")) << "a dangling symlink is not followed";
  const Result heatmaps = tessera("run -n 2 -q --heatmaps " + (dir / "loop-a").string());
  EXPECT_EQ(heatmaps.exit_code, 1);
  EXPECT_TRUE(contains(heatmaps.output, "is a symlink in a loop")) << heatmaps.output;
  // A symlink to tessera's own file is followed: the file is replaced, the link stays a link.
  const std::string target = (dir / "run.json").string(), link = (dir / "link.json").string();
  ASSERT_EQ(tessera("run -n 2 -q --arch mesh-32x32 --json " + target).exit_code, 0);
  std::filesystem::create_symlink(target, link);
  EXPECT_EQ(tessera("run -n 3 -q --arch mesh-32x32 --json " + link).exit_code, 0);
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_EQ(nlohmann::json::parse(read_all(target))["decode"]["passes"], 2);
}

TEST(Cli, InputsMustBeRegularFilesOfSensibleSize) {
  const auto dir = std::filesystem::temp_directory_path() / "tessera_smoke_inputs";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "tokenizer");
  std::filesystem::create_symlink("/dev/zero", dir / "tokenizer" / "encoder.json");
  std::filesystem::copy_file(TESSERA_SOURCE_DIR "/models/default/vocab.bpe", dir / "tokenizer" / "vocab.bpe");
  const std::string fifo = (dir / "fifo").string();
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // A 17 MiB sparse file is larger than any YAML description.
  const std::string big = (dir / "big.yaml").string();
  { std::ofstream(big) << "name: x\n"; }
  std::filesystem::resize_file(big, 17u << 20);
  // A config that is a symlink to a long file: the message quotes a short excerpt of it at most.
  std::string letter;
  for (int i = 0; i < 2000; ++i) letter += "private words of a letter ";
  std::filesystem::create_symlink(temp_file("letter.txt", letter), dir / "letter.yaml");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"simulate /dev/zero", "/dev/zero: is a character device, not a regular file"},
      {"report /dev/zero -o " + (dir / "r.html").string(), "/dev/zero: is a character device"},
      {"run --precision /dev/zero", "/dev/zero: is a character device"},
      {"eval --text /dev/zero", "/dev/zero: is a character device"},
      {"run -m /dev/zero", "/dev/zero: is a character device"},
      {"run --arch /dev/zero --no-numerics", "/dev/zero: is a character device"},
      {"run --arch host --tokenizer " + (dir / "tokenizer").string(), "encoder.json: is a character device"},
      {"simulate " + fifo, "is a FIFO (named pipe), not a regular file"},
      {"eval --text " + fifo, "is a FIFO (named pipe), not a regular file"},
      {"run --arch host -n 2 --weights " + fifo, "is a FIFO (named pipe), not a regular file"},
      {"run -m " + big, "17.0 MiB is larger than any YAML description tessera reads (16.0 MiB)"},
      {"run -m " + (dir / "letter.yaml").string(),
       "expected a YAML mapping at the top level, got 'private words of a letter private words of a letter private "
       "...'"}};
  for (const auto& [args, message] : cases) {
    const Result r = tessera(args);
    EXPECT_EQ(r.exit_code, 1) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, message)) << args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << args << "\n" << r.output;
    EXPECT_LT(r.output.size(), 400u) << args << "\n" << r.output;
  }
}

TEST(Cli, RerunningACommandReplacesItsOwnOutputs) {
  const auto dir = std::filesystem::temp_directory_path() / "tessera_smoke_rerun";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto at = [&](const char* name) { return (dir / name).string(); };
  const std::vector<std::string> commands = {
      "run -n 3 -q --arch mesh-32x32 --json " + at("run.json") + " --csv " + at("run.csv") + " --trace " +
          at("trace.json") + " --heatmaps " + at("maps"),
      "compile --arch mesh-32x32 --prompt-tokens 8 -n 4 -o " + at("mesh-plan.json"),
      "compile --arch h100 --dtype fp16 -o " + at("gpu-plan.json"),
      "compile --arch gc200 --dtype fp16 -o " + at("bsp-plan.json"),
      "simulate " + at("mesh-plan.json") + " -q --json " + at("sim.json") + " --csv " + at("sim.csv") + " --trace " +
          at("sim-trace.json") + " --heatmaps " + at("sim-maps"),
      "report " + at("run.json") + " -o " + at("report.html"),
      "compare --arch h100,wse2 --prompt-len 8 --gen 4 --json " + at("compare.json") + " --csv " + at("compare.csv"),
      "run -n 3 -q --arch h100 --dtype fp16 --json " + at("gpu.json") + " --csv " + at("gpu.csv") + " --trace " +
          at("gpu-trace.json"),
      "report " + at("gpu.json") + " -o " + at("gpu.html")};
  for (const auto& args : commands)
    for (int i = 0; i < 2; ++i) {
      const Result r = tessera(args);
      EXPECT_EQ(r.exit_code, 0) << "run " << i + 1 << ": " << args << "\n" << r.output;
    }
  for (const char* name :
       {"run.json", "run.csv", "trace.json", "mesh-plan.json", "gpu-plan.json", "bsp-plan.json", "sim.json", "sim.csv",
        "sim-trace.json", "report.html", "compare.json", "compare.csv", "maps/sram.png", "sim-maps/energy.svg"})
    EXPECT_GT(std::filesystem::file_size(dir / name), 100u) << name;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    EXPECT_FALSE(contains(entry.path().filename().string(), ".tessera-") &&
                 entry.path().filename() != ".tessera-heatmaps")
        << "temporary file left behind: " << entry.path();
}

TEST(Cli, FlagsThatWouldBeIgnoredAreErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"compile -o /tmp/tessera_smoke_ir.txt", "compile --output: --output writes or shapes a plan and needs --arch"},
      {"compile --prompt-tokens 8", "--prompt-tokens writes or shapes a plan and needs --arch"},
      {"compile --dtype fp16", "--dtype writes or shapes a plan and needs --arch"},
      {"compile --arch wse2 --emit ir -o /tmp/tessera_smoke_x.json", "--emit prints the IR, without --arch"},
      {"compare --arch h100 --weights random", "--weights is for --numerics"},
      {"run --no-numerics --seed 4", "--seed chooses values, and --no-numerics computes none"}};
  for (const auto& [args, message] : cases) {
    const Result r = tessera(args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_TRUE(contains(r.output, message)) << args << "\n" << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists("/tmp/tessera_smoke_ir.txt"));
}

TEST(Cli, TraceCoversTheRunAndStaysSmall) {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string trace = (dir / "tessera_smoke_trace.json").string(),
                    metrics = (dir / "tessera_smoke_m.json").string();
  std::filesystem::remove(trace);
  std::filesystem::remove(metrics);
  const Result r = tessera("run -n 40 --trace " + trace + " --json " + metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(trace), m(metrics);
  const auto doc = nlohmann::json::parse(in);
  const auto run = nlohmann::json::parse(m);
  double prefill_us = 0, decode_us = 0;
  size_t slices = 0;
  std::set<std::string> tracks;
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] == "M") {
      tracks.insert(e["args"]["name"].get<std::string>());
      continue;
    }
    ASSERT_EQ(e["ph"], "X");
    ++slices;
    if (e["tid"].get<int>() >= 1000) continue;  // collective tracks repeat the steps' communication
    (e["pid"] == 1 ? prefill_us : decode_us) += e["dur"].get<double>();
  }
  // Prefill chunks overlap across the layer stages, so the slices add up to the stages' work, not
  // to the phase's time.
  const auto& prefill = run["prefill"];
  const double prefill_work_us =
      (prefill["compute_cycles"].get<double>() + prefill["communication_cycles"].get<double>() +
       prefill["host_cycles"].get<double>()) /
      prefill["cycles"].get<double>() * prefill["seconds"].get<double>() * 1e6;
  EXPECT_NEAR(prefill_us, prefill_work_us, 1e-3 * prefill_us);
  EXPECT_NEAR(decode_us, run["decode"]["seconds"].get<double>() * 1e6, 1e-3 * decode_us);
  EXPECT_TRUE(tracks.contains("layer 3") && tracks.contains("lm_head") && tracks.contains("host I/O"));
  EXPECT_TRUE(tracks.contains("fabric: allreduce_y") && tracks.contains("fabric: stage_transfer"));
  // 39 decode passes: three in full detail (~40 steps each), the others one slice per stage.
  EXPECT_LT(slices, 1200u);
}

TEST(Cli, HeatmapsAreWrittenIntoTheirOwnDirectory) {
  const auto dir = std::filesystem::temp_directory_path() / "tessera_smoke_heatmaps";
  std::filesystem::remove_all(dir);
  const Result r = tessera("run -n 4 --heatmaps " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name : {"sram", "compute", "energy"}) {
    std::ifstream png(dir / (std::string(name) + ".png"), std::ios::binary), svg(dir / (std::string(name) + ".svg"));
    std::string signature(8, '\0');
    png.read(signature.data(), 8);
    EXPECT_EQ(signature, "\x89PNG\r\n\x1a\n") << name;
    const std::string text((std::istreambuf_iterator<char>(svg)), {});
    EXPECT_TRUE(contains(text, ">layer 0<") && contains(text, ">lm_head<")) << name << ": stages labelled";
    EXPECT_TRUE(contains(text, "data:image/png;base64,")) << name;
  }
  const Result again = tessera("run -n 4 --heatmaps " + dir.string());
  EXPECT_EQ(again.exit_code, 0) << "tessera may replace its own heatmaps: " << again.output;
  const Result user_dir =
      tessera("run -n 4 --heatmaps " + std::filesystem::path(TESSERA_SOURCE_DIR).string() + "/docs");
  EXPECT_NE(user_dir.exit_code, 0);
  EXPECT_TRUE(contains(user_dir.output, "is not a directory tessera made")) << user_dir.output;
}

namespace {

// The text of the element with this id in an HTML (or DOM dump) string.
std::string element_text(const std::string& html, const std::string& id) {
  const std::string open = "id=\"" + id + "\">";
  const size_t at = html.find(open);
  if (at == std::string::npos) return "<missing " + id + ">";
  const size_t begin = at + open.size();
  return html.substr(begin, html.find('<', begin) - begin);
}

struct ReportFiles {
  std::string json, html;
};

ReportFiles make_report(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path();
  ReportFiles f{(dir / (name + ".json")).string(), (dir / (name + ".html")).string()};
  std::filesystem::remove(f.json);
  std::filesystem::remove(f.html);
  EXPECT_EQ(tessera("run -n 12 --json " + f.json).exit_code, 0);
  const Result r = tessera("report " + f.json + " -o " + f.html);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return f;
}

// The figures the report page must show, formatted as it formats them, from the run's JSON.
std::vector<std::pair<std::string, std::string>> expected_figures(const std::string& json_path) {
  std::ifstream in(json_path);
  const auto run = nlohmann::json::parse(in);
  return {
      {"ttft-ms", fmt::format("{:.6g}", run["time_to_first_token_s"].get<double>() * 1e3)},
      {"decode-tps", fmt::format("{:.6g}", run["decode_tokens_per_s_per_user"].get<double>())},
      {"sram-high-water-kib", fmt::format("{:.6g}", run["sram"]["high_water_bytes_per_core"].get<double>() / 1024)},
      {"energy-per-token-mj", fmt::format("{:.6g}", run["energy_per_decode_token"]["total_pj"].get<double>() * 1e-9)},
      {"cores-used", std::to_string(run["cores"]["used"].get<int64_t>())},
      {"decode-ms", fmt::format("{:.6g}", run["decode"]["seconds"].get<double>() * 1e3)}};
}

}  // namespace

TEST(Cli, ReportPageShowsTheRunsFiguresAndNeedsNoNetwork) {
  const ReportFiles f = make_report("tessera_smoke_report");
  std::ifstream in(f.html);
  const std::string html((std::istreambuf_iterator<char>(in)), {});
  for (const auto& [id, value] : expected_figures(f.json)) EXPECT_EQ(element_text(html, id), value) << id;
  EXPECT_FALSE(contains(html, "<script")) << "no scripts";
  EXPECT_FALSE(contains(html, "src=\"http")) << "no external resources";
  EXPECT_FALSE(contains(html, "href=\"http")) << "no external resources";
  EXPECT_NE(element_text(html, "roofline-points"), "0");
  const Result bad = tessera("report " TESSERA_SOURCE_DIR "/README.md -o /tmp/tessera_smoke_bad.html");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(contains(bad.output, "not a tessera run")) << bad.output;
}

// The page as a browser renders it: headless Chromium (Debian's chromium, installed by .ci/run)
// dumps the DOM, whose figures must equal the JSON's, and takes a screenshot.
TEST(Browser, ChromiumRendersTheReportWithTheRunsFigures) {
  if (!std::filesystem::exists("/usr/bin/chromium"))
    GTEST_SKIP() << "chromium is not installed (apt-get install chromium)";
  const ReportFiles f = make_report("tessera_browser_report");
  const std::string flags =
      "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
      "--disable-component-update --disable-sync --user-data-dir=" +
      (std::filesystem::temp_directory_path() / "tessera_chromium_profile").string();
  const std::string dump = (std::filesystem::temp_directory_path() / "tessera_report_dom.html").string();
  ASSERT_EQ(
      std::system(
          ("/usr/bin/chromium " + flags + " --dump-dom file://" + f.html + " > " + dump + " 2>/dev/null").c_str()),
      0);
  std::ifstream in(dump);
  const std::string dom((std::istreambuf_iterator<char>(in)), {});
  ASSERT_TRUE(contains(dom, "<h1 id=\"title\">default on wse2</h1>")) << dom.substr(0, 500);
  for (const auto& [id, value] : expected_figures(f.json)) EXPECT_EQ(element_text(dom, id), value) << id;
  const std::string shot = (std::filesystem::temp_directory_path() / "tessera_report.png").string();
  std::filesystem::remove(shot);
  std::system(("/usr/bin/chromium " + flags + " --window-size=1200,2400 --screenshot=" + shot + " file://" + f.html +
               " > /dev/null 2>&1")
                  .c_str());
  ASSERT_TRUE(std::filesystem::exists(shot));
  EXPECT_GT(std::filesystem::file_size(shot), 20000u) << "a rendered page, not a blank one";
}

// The run JSON's key set is an interface (docs/metrics.md): adding a key is fine, but renaming or
// dropping one must be deliberate, so this list fails when it changes.
TEST(Cli, RunJsonKeysAreStable) {
  const ReportFiles f = make_report("tessera_smoke_keys");
  std::ifstream in(f.json);
  const auto run = nlohmann::json::parse(in);
  std::set<std::string> keys;
  for (const auto& [key, _] : run.items()) keys.insert(key);
  EXPECT_EQ(keys, (std::set<std::string>{"arch",
                                         "bound",
                                         "fabric",
                                         "memory",
                                         "steps",
                                         "utilization",
                                         "busiest_decode_steps",
                                         "clock_hz",
                                         "config",
                                         "cores",
                                         "cycle_region",
                                         "decode",
                                         "decode_steps",
                                         "decode_tokens_per_s_per_user",
                                         "energy_per_decode_token",
                                         "fabric_model",
                                         "link_load",
                                         "grid",
                                         "link_words_per_cycle",
                                         "model",
                                         "peak_macs_per_cycle_per_core",
                                         "prefill",
                                         "schema",
                                         "sram",
                                         "stages",
                                         "time_to_first_token_s",
                                         "tokens",
                                         "precision"}));
  std::set<std::string> phase_keys;
  for (const auto& [key, _] : run["decode"].items()) phase_keys.insert(key);
  EXPECT_EQ(phase_keys,
            (std::set<std::string>{"passes", "cycles", "seconds", "compute_cycles", "instruction_issue_cycles",
                                   "communication_cycles", "host_cycles", "core_time", "energy"}));
}

namespace {

double perplexity_of(const std::string& output) {
  const size_t at = output.find("perplexity ");
  return at == std::string::npos ? -1 : std::stod(output.substr(at + 11));
}

}  // namespace

TEST(Cli, EvalMeasuresPerplexityAndTheWaferAgrees) {
  std::ifstream in(TESSERA_SOURCE_DIR "/tests/data/text/persuasion-end.txt");
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string excerpt = temp_file("excerpt.txt", text.substr(0, 3000));
  const Result fp32 = tessera("eval -q --window 128 --text " + excerpt);
  ASSERT_EQ(fp32.exit_code, 0) << fp32.output;
  // The shipped model scores its held-out text near its training-time held-out perplexity (41.7).
  EXPECT_GT(perplexity_of(fp32.output), 25);
  EXPECT_LT(perplexity_of(fp32.output), 70);
  const Result int4_host = tessera("eval -q --window 128 --weights-format int4 --text " + excerpt);
  const Result int4_mesh = tessera("eval -q --window 128 --weights-format int4 --arch mesh-32x32 --text " + excerpt);
  ASSERT_EQ(int4_mesh.exit_code, 0) << int4_mesh.output;
  EXPECT_NEAR(perplexity_of(int4_mesh.output), perplexity_of(int4_host.output), 1e-3) << "same values on the wafer";
  const Result ternary = tessera("eval -q --window 128 --weights-format ternary --text " + excerpt);
  EXPECT_GT(perplexity_of(ternary.output), 1.2 * perplexity_of(fp32.output)) << "ternary without training hurts";
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"eval --text " + excerpt + " --weights-format fp6", "weights format 'fp6' is not one tessera knows"},
           {"eval --text " + excerpt + " --weights-format int4 --group 100", "does not divide"},
           {"eval --text /nonexistent.txt", "cannot open"},
           {"eval --text " + excerpt + " --window 1000", "exceeds default's context"}}) {
    const Result r = tessera(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_TRUE(contains(r.output, message)) << args << "\n" << r.output;
  }
}

TEST(Cli, PrecisionPolicyFromFlagsAndYamlRunsOnHostAndWafer) {
  std::ifstream in(TESSERA_SOURCE_DIR "/tests/data/text/persuasion-end.txt");
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::string excerpt = temp_file("excerpt-policy.txt", text.substr(0, 2000));
  const std::string policy =
      temp_file("policy.yaml", "weights: int8\nactivations: fp16\nkv: fp8_e4m3\nprune: unstructured:0.5\n");
  const Result host = tessera("eval -q --window 128 --precision " + policy + " --text " + excerpt);
  const Result mesh = tessera("eval -q --window 128 --precision " + policy + " --arch mesh-32x32 --text " + excerpt);
  ASSERT_EQ(mesh.exit_code, 0) << mesh.output;
  EXPECT_TRUE(contains(host.output, "weights int8, activations fp16, kv fp8_e4m3, pruned unstructured:0.5"))
      << host.output;
  EXPECT_NEAR(perplexity_of(mesh.output), perplexity_of(host.output), 1e-3 * perplexity_of(host.output));
  // Flags override the file.
  const Result run = tessera("run -q -n 4 --arch mesh-32x32 --precision " + policy + " --kv-format bf16 --prune 2:4");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "weights int8, activations fp16, kv bf16, pruned 2:4")) << run.output;
  EXPECT_TRUE(contains(run.output, "the arch does not declare this pattern: zeros stored and multiplied"))
      << run.output;
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"run --prune unstructured:0", "density must be in (0, 1]"},
           {"run --prune block7:0.5", "7x7 blocks do not tile"},
           {"run --kv-format int8", "kv format 'int8' is not one tessera knows"},
           {"run --precision /nonexistent/policy.yaml", "cannot open"}}) {
    const Result r = tessera(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_TRUE(contains(r.output, message)) << args << "\n" << r.output;
  }
}

TEST(Cli, CompareRunsEveryKindOfMachineSideBySide) {
  const std::string json = temp_file("compare.json", "");
  const Result r = tessera(
      "compare -m llama3-8b --arch wse3,h100,a100,trn2,34xgc200,33xgc200 --prompt-len 64 --gen 16 --batch 1,8 "
      "--json " +
      json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "pipeline 32 + head 2")) << r.output;
  EXPECT_TRUE(contains(r.output, "does not fit on 33 x gc200; 34 would fit (--arch 34xgc200)")) << r.output;
  std::ifstream in(json);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_TRUE(contains(text, "\"schema\": \"tessera-compare/2\"")) << text;
  EXPECT_TRUE(contains(text, "\"mapping\": \"pipeline 32 + head 2\"")) << text;
  const Result gpu = tessera("run --arch h100 -n 6 -q --dtype fp16");
  ASSERT_EQ(gpu.exit_code, 0) << gpu.output;
  EXPECT_TRUE(contains(gpu.output, "default on 1 x h100 (simulated, kernel by kernel; batch 1)")) << gpu.output;
  const Result ipu = tessera("run --arch gc200 -n 6 -q --dtype fp16");
  ASSERT_EQ(ipu.exit_code, 0) << ipu.output;
  EXPECT_TRUE(contains(ipu.output, "default on gc200 (simulated, bulk-synchronous supersteps; batch 1)")) << ipu.output;
  const Result too_big = tessera("run -m llama3-70b --arch h100 --no-numerics --prompt-tokens 8 -n 8 --dtype fp16");
  EXPECT_NE(too_big.exit_code, 0);
  EXPECT_TRUE(contains(too_big.output, "--tp 2")) << too_big.output;
  for (const auto& [args, message] : std::vector<std::pair<std::string, std::string>>{
           {"compare --arch 0xwse3", "write a system as COUNTxARCH"},
           {"compare --arch 4xnosuchchip", "nosuchchip"},
           {"run --arch wse2 --batch 4", "wse2 computes one request per pass; batching and multi-chip systems"}}) {
    const Result bad = tessera(args);
    EXPECT_NE(bad.exit_code, 0) << args;
    EXPECT_TRUE(contains(bad.output, message)) << args << "\n" << bad.output;
  }
}

// A mixture of experts beside the dense model of its active parameters, in one table: alike at
// batch 1 on a GPU, the mixture far slower per user once a batch's tokens choose every expert;
// wafers pipeline the mixture over 3 of 4 CS-3s (a wafer holds 12 of its 32 layers), GC200s over
// groups of 4 splitting each layer's experts; --routing needs experts.
TEST(Cli, CompareSetsModelsSideBySide) {
  const Result r =
      tessera("compare -m mixtral-8x7b,mixtral-8x7b-dense --arch h200,4xwse3,256xgc200 --batch 1,64 --gen 16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "mixtral-8x7b and mixtral-8x7b-dense, 128 prompt")) << r.output;
  std::map<std::string, double> per_user;  // "model arch batch" -> tokens/s per user
  std::map<std::string, std::string> mapping;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string model, arch, chips, batch, fits, mapping_a, mapping_b, ttft;
    double tokens = 0;
    if (words >> model >> arch >> chips >> batch >> fits >> mapping_a >> mapping_b >> ttft >> tokens && fits == "yes") {
      per_user[model + " " + arch + " " + batch] = tokens;
      mapping[model + " " + arch + " " + batch] = mapping_a + " " + mapping_b;
    }
  }
  EXPECT_EQ(mapping["mixtral-8x7b 4xwse3 1"], "pipeline 3") << r.output;
  EXPECT_GT(per_user["mixtral-8x7b 4xwse3 1"], 0) << r.output;
  EXPECT_TRUE(contains(r.output, "mixtral-8x7b       256xgc200      129     1  yes  pipeline 32 x experts 4 + head 1"))
      << r.output;
  EXPECT_NEAR(per_user["mixtral-8x7b h200 1"] / per_user["mixtral-8x7b-dense h200 1"], 1.0, 0.1) << r.output;
  EXPECT_GT(per_user["mixtral-8x7b-dense h200 64"], 2 * per_user["mixtral-8x7b h200 64"]) << r.output;
  // A run's JSON carries the routing and what it gives the experts.
  const std::string json = temp_file("moe.json", "");
  const Result run = tessera(
      "run -m mixtral-8x7b --arch h100 --tp 2 --no-numerics --dtype fp16 --prompt-tokens 64 -n 4 "
      "-q --json " +
      json);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const nlohmann::json routing = nlohmann::json::parse(read_all(json))["routing"];
  EXPECT_EQ(routing["routing"], "uniform");
  EXPECT_EQ(routing["experts"], 8);
  EXPECT_GT(routing["decode"]["experts_used"].get<double>(), 1.0);
  EXPECT_LT(routing["decode"]["experts_used"].get<double>(), 2.0) << "the busiest of 2 GPUs reads 1 or 2 experts";
  // Expert parallelism (--ep): experts over 8 GPUs, attention data-parallel; it needs a request per
  // GPU; --ep on wafers is refused; without --ep or --tp, compare takes it where it serves the batch
  // faster than tensor parallelism (--ep 1 asks for tensor parallelism); `run --ep` on one GPU
  // preset times the group.
  const Result ep = tessera("compare -m mixtral-8x7b --arch 8xh100,4xwse3 --batch 1,64 --gen 8 --ep 8");
  ASSERT_EQ(ep.exit_code, 0) << ep.output;
  EXPECT_TRUE(contains(ep.output, "batch 1 leaves GPUs idle")) << ep.output;
  EXPECT_TRUE(contains(ep.output, "--ep is for GPU-like chips (shared_memory); wse3 chips form pipelines"))
      << ep.output;
  EXPECT_TRUE(has_row(ep.output, "8xh100 8 64 yes expert 8 ")) << ep.output;
  const Result chosen = tessera("compare -m mixtral-8x7b --arch 8xh100 --batch 1,64 --gen 8");
  EXPECT_TRUE(has_row(chosen.output, "8xh100 8 1 yes tensor 2 x data 4 ")) << chosen.output;
  EXPECT_TRUE(has_row(chosen.output, "8xh100 8 64 yes expert 8 ")) << chosen.output;
  const Result tensor = tessera("compare -m mixtral-8x7b --arch 8xh100 --batch 64 --gen 8 --ep 1");
  EXPECT_TRUE(has_row(tensor.output, "8xh100 8 64 yes tensor 2 x data 4 ")) << tensor.output;
  const Result ep_run =
      tessera("run -m mixtral-8x7b --arch h100 --ep 8 --batch 4 --no-numerics --prompt-tokens 32 -n 4");
  ASSERT_EQ(ep_run.exit_code, 0) << ep_run.output;
  EXPECT_TRUE(contains(ep_run.output, "on 8 x h100 (simulated, kernel by kernel; batch 32; experts over the 8 GPUs"))
      << ep_run.output;
  const Result dense = tessera("compare -m llama3-8b --arch h100 --routing balanced");
  EXPECT_NE(dense.exit_code, 0);
  EXPECT_TRUE(contains(dense.output, "--routing is for mixtures of experts; llama3-8b has none")) << dense.output;
}

TEST(Cli, CompareChecksTokensAgainstTheReference) {
  const Result r = tessera("compare --numerics --arch wse2,gc200,h100,2xwse2 --prompt-len 12 --gen 6 --dtype fp32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "fabric    = reference\n")) << r.output;
  EXPECT_TRUE(contains(r.output, "sync      = reference\n")) << r.output;  // gc200, in its plan's order
  EXPECT_FALSE(contains(r.output, "differ at")) << r.output;
  EXPECT_TRUE(contains(r.output, "not checked (systems)")) << r.output;
  EXPECT_TRUE(contains(r.output, "1 chip x data 2")) << r.output;
  const Result mixed = tessera("compare -m llama3-8b --arch 2xh100,wse3 --tp 2 --prompt-len 16 --gen 4");
  ASSERT_EQ(mixed.exit_code, 0) << mixed.output;
  EXPECT_TRUE(contains(mixed.output, "tensor 2")) << mixed.output;
  EXPECT_TRUE(contains(mixed.output, "--tp is for GPU-like chips")) << mixed.output;
  const Result sweep = tessera("compare -m llama3-8b --arch h100 --sweep");
  ASSERT_EQ(sweep.exit_code, 0) << sweep.output;
  EXPECT_TRUE(contains(sweep.output, "h100: memory-bound up to batch 256, compute-bound from batch 512"))
      << sweep.output;
  // compare's own JSON and CSV are replaced on a second run; a user's file never is.
  const std::string json = temp_file("again.json", ""), csv = temp_file("again.csv", "");
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(tessera("compare --arch h100 --json " + json + " --csv " + csv).exit_code, 0) << i;
  const std::string mine = temp_file("mine.json", "{\"my\": \"notes\"}");
  const Result refused = tessera("compare --arch h100 --json " + mine);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_TRUE(contains(refused.output, "is not a file tessera wrote")) << refused.output;
}

// GPUs, IPUs and Trainium write the same files as a wafer run (but heatmaps): the JSON's common
// keys, a step CSV, a timeline whose slices add up to the phases, and a report page.
TEST(Cli, EveryFabricWritesJsonCsvTraceAndAReport) {
  const auto dir = std::filesystem::temp_directory_path() / "tessera_smoke_fabrics";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const std::string arch : {"h100", "gc200", "trn2", "mesh-32x32"}) {
    SCOPED_TRACE(arch);
    const std::string base = (dir / arch).string();
    const Result r = tessera("run -q -n 5 --dtype fp16 --arch " + arch + " --json " + base + ".json --csv " + base +
                             ".csv --trace " + base + ".trace.json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto run = nlohmann::json::parse(read_all(base + ".json"));
    for (const char* key : {"schema", "fabric", "arch", "model", "precision", "tokens", "time_to_first_token_s",
                            "decode_tokens_per_s_per_user", "prefill", "decode", "energy_per_decode_token", "memory",
                            "bound", "utilization", "steps", "config"})
      EXPECT_TRUE(run.contains(key)) << key;
    EXPECT_EQ(run["arch"], arch);
    EXPECT_GT(run["memory"]["used_bytes"].get<double>(), 0);
    EXPECT_LT(run["memory"]["used_bytes"].get<double>(), run["memory"]["available_bytes"].get<double>());
    EXPECT_FALSE(run["steps"]["decode_last_pass"].empty());
    if (arch == "mesh-32x32") continue;  // its CSV and timeline have more (TraceCoversTheRunAndStaysSmall)
    // The timeline covers each phase exactly.
    const auto trace = nlohmann::json::parse(read_all(base + ".trace.json"));
    double prefill_us = 0, decode_us = 0;
    for (const auto& e : trace["traceEvents"])
      if (e["ph"] == "X") (e["pid"] == 1 ? prefill_us : decode_us) += e["dur"].get<double>();
    EXPECT_NEAR(prefill_us, run["prefill"]["seconds"].get<double>() * 1e6, 1e-6 * prefill_us);
    EXPECT_NEAR(decode_us, run["decode"]["seconds"].get<double>() * 1e6, 1e-6 * decode_us);
    // One CSV row per step of the last passes.
    const std::string csv = read_all(base + ".csv");
    EXPECT_EQ(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')),
              1 + run["steps"]["prefill_last_pass"].size() + run["steps"]["decode_last_pass"].size());
    const Result page = tessera("report " + base + ".json -o " + base + ".html");
    ASSERT_EQ(page.exit_code, 0) << page.output;
    const std::string html = read_all(base + ".html");
    EXPECT_EQ(element_text(html, "ttft-ms"), fmt::format("{:.6g}", run["time_to_first_token_s"].get<double>() * 1e3));
    EXPECT_EQ(element_text(html, "decode-tps"),
              fmt::format("{:.6g}", run["decode_tokens_per_s_per_user"].get<double>()));
  }
  const Result maps = tessera("run -q -n 3 --arch h100 --heatmaps " + (dir / "maps").string());
  EXPECT_NE(maps.exit_code, 0);
  EXPECT_TRUE(contains(maps.output, "--heatmaps draws the cores of a mesh machine")) << maps.output;
}

// `tessera train`: a run stopped and resumed equals the uninterrupted one bit for bit, its
// checkpoint is a model package `tessera run` loads, and the held-out loss improves.
TEST(Cli, TrainResumesExactlyAndRunLoadsTheCheckpoint) {
  const auto base = std::filesystem::temp_directory_path() / "tessera_smoke_train";
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const std::string args = std::string("train --text ") + TESSERA_SOURCE_DIR +
                           "/tests/data/text/persuasion-end.txt --steps 6 --batch 2 --seq 32 --warmup 2 --lr 3e-3 "
                           "--eval-every 3 -q -o ";
  const Result whole = tessera(args + (base / "whole").string());
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  ASSERT_EQ(tessera(args + (base / "split").string() + " --stop-after 3").exit_code, 0);
  const Result resumed = tessera(args + (base / "split").string() + " --resume " + (base / "split").string());
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.stdout_text, "resumed after step 3"));
  EXPECT_EQ(read_all((base / "whole/model.safetensors").string()),
            read_all((base / "split/model.safetensors").string()));
  EXPECT_EQ(read_all((base / "whole/optimizer.safetensors").string()),
            read_all((base / "split/optimizer.safetensors").string()));
  auto losses = [](const std::string& csv) {  // step, lr, loss, gradient norm, held-out: not the timings
    std::string out;
    std::istringstream in(csv);
    for (std::string line; std::getline(in, line);) {
      size_t cut = 0;
      for (int field = 0; field < 5; ++field) cut = line.find(',', cut) + 1;
      out += line.substr(0, cut) + "\n";
    }
    return out;
  };
  EXPECT_EQ(losses(read_all((base / "whole/loss.csv").string())), losses(read_all((base / "split/loss.csv").string())));
  EXPECT_TRUE(contains(read_all((base / "whole/loss.svg").string()), "<polyline"));
  double before = 0, after = 0;
  ASSERT_EQ(std::sscanf(whole.stdout_text.c_str() + whole.stdout_text.find("held-out loss "),
                        "held-out loss %lf -> %lf", &before, &after),
            2)
      << whole.stdout_text;
  EXPECT_LT(after, before - 0.5) << "six steps from scratch already lower the held-out loss";
  const Result run = tessera("run -m " + (base / "whole").string() + " --arch host -n 4 -t 0");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  std::filesystem::remove_all(base);
}

TEST(Cli, TrainRefusesAResumeWithOtherSettingsAndAUsersDirectory) {
  const auto base = std::filesystem::temp_directory_path() / "tessera_smoke_train_refusals";
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base / "mine");
  std::ofstream(base / "mine" / "notes.txt") << "mine";
  const std::string args = std::string("train --text ") + TESSERA_SOURCE_DIR +
                           "/tests/data/text/persuasion-end.txt --steps 4 --batch 2 --seq 32 -q ";
  const Result user_dir = tessera(args + "-o " + (base / "mine").string());
  EXPECT_EQ(user_dir.exit_code, 1);
  EXPECT_TRUE(contains(user_dir.output, "not a directory tessera made")) << user_dir.output;
  EXPECT_EQ(read_all((base / "mine" / "notes.txt").string()), "mine");
  ASSERT_EQ(tessera(args + "-o " + (base / "ckpt").string() + " --stop-after 2").exit_code, 0);
  const Result other = tessera(std::string("train --text ") + TESSERA_SOURCE_DIR +
                               "/tests/data/text/persuasion-end.txt --steps 4 --batch 2 --seq 16 -q --resume " +
                               (base / "ckpt").string());
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_TRUE(contains(other.output, "seq = '32', this run has '16'")) << other.output;
  const Result bad = tessera(args + "--optimizer lion");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(contains(bad.output, "expected adamw or sgd")) << bad.output;
  std::filesystem::remove_all(base);
}

// `tessera train --arch CHIP`: values on one wafer or IPU, in its arithmetic order: the same
// losses as the host to the printed digits, the chip's layout named, and what it cannot do refused.
TEST(Cli, TrainOnAChipWithValuesMatchesTheHostAndRefusesWhatItCannot) {
  const std::string args = std::string("train --text ") + TESSERA_SOURCE_DIR +
                           "/tests/data/text/persuasion-end.txt --steps 2 --batch 2 --seq 32 --eval-every 0 -q";
  const Result host = tessera(args);
  ASSERT_EQ(host.exit_code, 0) << host.output;
  const auto losses = [](const std::string& text) { return text.substr(text.find("steps 2:"), 80); };
  for (const char* chip : {"wse2", "gc200"}) {
    const Result r = tessera(args + " --arch " + chip);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.stdout_text, std::string("on one ") + chip + ": ")) << r.stdout_text;
    EXPECT_TRUE(contains(r.stdout_text, std::string("in ") + chip + "'s arithmetic order")) << r.stdout_text;
    EXPECT_EQ(losses(r.stdout_text), losses(host.stdout_text)) << chip;
  }
  for (const auto& [flags, message] : std::vector<std::pair<std::string, std::string>>{
           {" --arch 16xwse2", "training with values runs on one chip"},
           {" --arch h100", "training with values on h100 (shared_memory fabric) is not modelled"},
           {" --arch wse2 --global-batch 8", "--global-batch lays out a step on a machine (--no-numerics)"},
           {" -m gpt2-small --arch gc200", "gpt2-small does not fit on"}}) {
    const Result r = tessera(args + flags);
    EXPECT_EQ(r.exit_code, 1) << flags;
    EXPECT_TRUE(contains(r.output, message)) << flags << ": " << r.output;
  }
}

// A kernel row whose source gives no grid lists candidate sides: the prediction is the fastest of
// them, and the row says which.
TEST(Cli, ValidateKernelRowsTakeTheFastestOfTheirGrids) {
  const std::string rows = temp_file("grids.yaml", R"(source: a test
rows:
  - name: a GEMV on the fastest of two grids
    system: mesh-32x32
    gemm: {m: 1, k: 512, n: 512, dtype: fp16, algorithm: meshgemv, grids: [4, 32]}
    metric: seconds
    published: 1.0e-6
)");
  const std::string json = temp_file("grids.json", "");
  const Result r = tessera("validate " + rows + " --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto row = nlohmann::json::parse(read_all(json)).at("rows").at(0);
  double fastest = INFINITY;
  int side = 0;
  for (const int p : {4, 32}) {
    const std::string product = temp_file("grid.json", "");
    std::filesystem::remove(product);
    ASSERT_EQ(tessera(fmt::format("gemm -M 1 -K 512 -N 512 --arch mesh-32x32 --cores {} --algorithm meshgemv "
                                  "--no-numerics --json {}",
                                  p, product))
                  .exit_code,
              0);
    const double seconds = nlohmann::json::parse(read_all(product))
                               .at("machines")
                               .at(0)
                               .at("algorithms")
                               .at(0)
                               .at("seconds")
                               .get<double>();
    if (seconds < fastest) fastest = seconds, side = p;
  }
  EXPECT_DOUBLE_EQ(row.at("predicted").get<double>(), fastest);
  EXPECT_EQ(row.at("predicted_as").get<std::string>().rfind(fmt::format("meshgemv, {0} x {0} cores", side), 0), 0u)
      << row.at("predicted_as");
}

// A row outside 1.5x of its figure says why (known_gap) or is counted as unexplained; a known_gap
// on a row back within the band is flagged as out of date.
TEST(Cli, ValidateCountsRowsOutsideTheBandThatGiveNoReason) {
  const auto body = [](double published, const std::string& gap) {
    return fmt::format(R"(source: a test
rows:
  - name: a GEMM, no reason given
    system: mesh-32x32
    gemm: {{m: 128, k: 128, n: 128, dtype: fp16, algorithm: meshgemm}}
    metric: seconds
    published: {0}
  - name: the same GEMM with a reason
    system: mesh-32x32
    gemm: {{m: 128, k: 128, n: 128, dtype: fp16, algorithm: meshgemm}}
    metric: seconds
    published: {0}
    known_gap: {1}
)",
                       published, gap);
  };
  const std::string json = temp_file("gaps.json", ""), csv = temp_file("gaps.csv", "");
  std::filesystem::remove(json), std::filesystem::remove(csv);
  const Result off = tessera("validate " + temp_file("gaps.yaml", body(1.0, "the figure is a second")) + " --json " +
                             json + " --csv " + csv);
  ASSERT_EQ(off.exit_code, 0) << off.output;
  EXPECT_TRUE(contains(off.output, "    outside 1.5x, not explained: give the row a known_gap\n")) << off.output;
  EXPECT_TRUE(contains(off.output, "    outside 1.5x: the figure is a second\n")) << off.output;
  EXPECT_TRUE(contains(off.output, "; 1 outside 1.5x without a known_gap")) << off.output;
  const auto doc = nlohmann::json::parse(read_all(json));
  EXPECT_EQ(doc.at("components").at("unexplained"), 1);
  EXPECT_EQ(doc.at("components").at("within_1_5x"), 0);
  EXPECT_EQ(doc.at("rows").at(1).at("known_gap"), "the figure is a second");
  EXPECT_TRUE(contains(read_all(csv), ",the figure is a second\n")) << read_all(csv);
  // `tessera report` of the validation: the summary, the plot and each row with its reason.
  const std::string page = temp_file("gaps.html", "");
  std::filesystem::remove(page);
  const Result report = tessera("report " + json + " -o " + page);
  ASSERT_EQ(report.exit_code, 0) << report.output;
  const std::string html = read_all(page);
  EXPECT_TRUE(contains(html, "<svg")) << html;
  EXPECT_TRUE(contains(html, "1 outside 1.5x without a known_gap</p>")) << html;
  EXPECT_TRUE(
      contains(html, fmt::format("id=\"row-1-predicted\">{:.4g}<", doc.at("rows").at(1).at("predicted").get<double>())))
      << html;
  EXPECT_TRUE(contains(html, "id=\"row-0-error\">-100%<")) << html;
  EXPECT_TRUE(contains(html, ">not explained<br>")) << html;
  EXPECT_TRUE(contains(html, ">the figure is a second<br>")) << html;
  // The same rows with the prediction as the figure: within the band, the reason is stale.
  const double predicted = doc.at("rows").at(0).at("predicted").get<double>();
  const Result on = tessera("validate " + temp_file("gaps-on.yaml", body(predicted, "stale")));
  ASSERT_EQ(on.exit_code, 0) << on.output;
  EXPECT_TRUE(contains(on.output, "    within 1.5x now: the row's known_gap is out of date\n")) << on.output;
  EXPECT_FALSE(contains(on.output, "outside 1.5x,")) << on.output;
  EXPECT_TRUE(contains(on.output, "2 within 1.5x, 2 within 2x of the published figure; 0 outside 1.5x")) << on.output;
}

TEST(Cli, ValidatePredictsEachRowAndRefusesMalformedFiles) {
  const std::string rows = temp_file("rows.yaml", R"(source: a test
rows:
  - name: default model step on 4 H100
    model: default
    system: 4xh100
    training: {global_batch: 8, micro_batch: 1, seq: 128, tp: 1, pp: 2, zero: 1, recompute: none}
    metric: step_s
    published: 1.0e-3
  - name: default model decode on wse2
    model: default
    system: wse2
    inference: {prompt_tokens: 8, generated_tokens: 4, batch: 1, dtype: fp16}
    metric: tokens_per_s_per_user
    published: 1000
  - name: llama3-70b on one H100
    model: llama3-70b
    system: h100
    inference: {prompt_tokens: 8, generated_tokens: 4, batch: 1, dtype: fp16}
    metric: tokens_per_s_per_user
    published: 20
  - name: a GEMM alone on mesh-32x32
    system: mesh-32x32
    gemm: {m: 256, k: 256, n: 256, dtype: fp16, algorithm: meshgemm}
    metric: tflops
    published: 0.5
)");
  const std::string json = temp_file("validate.json", "");
  const Result r = tessera("validate " + rows + " --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "no prediction: ")) << "70B does not fit one H100\n" << r.output;
  EXPECT_TRUE(contains(r.output, "end-to-end: 3 rows, 2 predicted")) << r.output;
  EXPECT_TRUE(contains(r.output, "component (kernel) measurements: 1 rows, 1 predicted")) << r.output;
  const auto doc = nlohmann::json::parse(read_all(json));
  ASSERT_EQ(doc.at("rows").size(), 4u);
  // The kernel row is summarised apart: 2 x 256^3 FLOPs over the time `gemm` gives.
  const auto& kernel = doc.at("rows").at(3);
  EXPECT_EQ(kernel.at("workload"), "kernel");
  // How it was predicted: the row's algorithm on the largest square grid (no cores given).
  EXPECT_EQ(kernel.at("predicted_as").get<std::string>().rfind("meshgemm, 32 x 32 cores from", 0), 0u)
      << kernel.at("predicted_as");
  EXPECT_TRUE(contains(r.output, "    as meshgemm, 32 x 32 cores from")) << r.output;
  EXPECT_EQ(doc.at("components").at("rows"), 1);
  EXPECT_NEAR(doc.at("components").at("median_abs_error").get<double>(), std::fabs(kernel.at("error").get<double>()),
              1e-12);
  const std::string product = temp_file("validate-gemm.json", "");
  std::filesystem::remove(product);
  ASSERT_EQ(tessera("gemm -M 256 -K 256 -N 256 --arch mesh-32x32 --algorithm meshgemm --no-numerics --json " + product)
                .exit_code,
            0);
  const double seconds =
      nlohmann::json::parse(read_all(product)).at("machines").at(0).at("algorithms").at(0).at("seconds").get<double>();
  EXPECT_NEAR(kernel.at("predicted").get<double>(), 2.0 * 256 * 256 * 256 / seconds / 1e12, 1e-9);
  for (int i = 0; i < 2; ++i) {
    const auto& row = doc.at("rows").at(i);
    const double predicted = row.at("predicted").get<double>(), published = row.at("published").get<double>();
    EXPECT_GT(predicted, 0);
    EXPECT_NEAR(row.at("error").get<double>(), predicted / published - 1, 1e-12);
  }
  EXPECT_TRUE(doc.at("rows").at(2).at("predicted").is_null());
  // The median of the two |errors|, and the worst of them.
  const double e0 = std::fabs(doc.at("rows").at(0).at("error").get<double>());
  const double e1 = std::fabs(doc.at("rows").at(1).at("error").get<double>());
  EXPECT_NEAR(doc.at("summary").at("median_abs_error").get<double>(), (e0 + e1) / 2, 1e-12);
  EXPECT_NEAR(doc.at("summary").at("worst_abs_error").get<double>(), std::max(e0, e1), 1e-12);

  for (const auto& [body, expected] : std::vector<std::pair<std::string, std::string>>{
           {"source: s\nrows:\n  - {name: a, model: default, system: h100, metric: step_s, published: 1, "
            "training: {seq: 128, sequence: 2}}\n",
            "unknown key"},
           {"source: s\nrows:\n  - {name: a, model: default, system: h100, metric: speed, published: 1, "
            "training: {seq: 128}}\n",
            "'speed' is not a training metric"},
           {"rows:\n  - {name: a, model: default, system: h100, metric: step_s, published: 1, training: {seq: 128}}\n",
            "names no source"},
           {"source: s\nrows:\n  - {name: a, model: no-such-model, system: h100, metric: step_s, published: 1, "
            "training: {seq: 128}}\n",
            "no-such-model"},
           {"source: s\nrows:\n  - {name: a, model: default, system: h100, metric: step_s, published: -2, "
            "training: {seq: 128}}\n",
            "positive number"},
           {"source: s\nrows:\n  - {name: a, system: wse2, metric: step_s, published: 1, gemm: {m: 8, k: 8, n: 8}}\n",
            "'step_s' is not a kernel metric"},
           {"source: s\nrows:\n  - {name: a, system: wse2, metric: tflops, published: 1, gemm: {m: 8, k: 8, size: "
            "8}}\n",
            "unknown key"},
           {"source: s\nrows:\n  - {name: a, model: default, system: wse2, metric: tflops, published: 1, "
            "gemm: {m: 8}, inference: {batch: 1}}\n",
            "one of a training, an inference or a gemm"},
           {"source: s\nrows:\n  - {name: a, system: wse2, metric: seconds, published: 1, gemm: {m: 1, k: 8, n: 8, "
            "grids: [16, big]}}\n",
            "'big' is not a grid side"},
           {"source: s\nrows:\n  - {name: a, system: wse2, metric: seconds, published: 1, gemm: {m: 1, k: 8, n: 8, "
            "cores: 4, grids: [16]}}\n",
            "not both"}}) {
    const Result bad = tessera("validate " + temp_file("bad.yaml", body));
    EXPECT_NE(bad.exit_code, 0) << body;
    EXPECT_TRUE(contains(bad.output, expected)) << body << "\n" << bad.output;
  }
  // The shipped set: every row is predicted or says why not, and a user's file is never overwritten.
  const std::string mine = temp_file("mine.svg", "my drawing");
  const Result shipped = tessera("validate --svg " + mine);
  EXPECT_NE(shipped.exit_code, 0);
  EXPECT_EQ(read_all(mine), "my drawing");
}

TEST(Cli, TrainingOnMachinesWritesJsonTracesAndComparesMachines) {
  const std::string json = temp_file("step.json", ""), trace = temp_file("step.trace.json", "");
  const Result r = tessera(
      "train -m llama3-8b --arch 64xh100 --no-numerics --tp 8 --pp 4 --global-batch 64 --micro-batch 1 --json " + json +
      " --trace " + trace);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto step = nlohmann::json::parse(read_all(json));
  EXPECT_EQ(step.at("schema"), "tessera-train-step/1");
  EXPECT_NEAR(step.at("bubble_fraction").get<double>(), 3.0 / 35.0, 1e-12);
  EXPECT_NEAR(step.at("memory").at("used_bytes").get<double>(),
              step.at("memory").at("weights_bytes").get<double>() +
                  step.at("memory").at("gradients_bytes").get<double>() +
                  step.at("memory").at("optimizer_bytes").get<double>() +
                  step.at("memory").at("activations_bytes").get<double>(),
              1.0);
  const auto events = nlohmann::json::parse(read_all(trace)).at("traceEvents");
  std::set<std::string> tracks;
  for (const auto& e : events)
    if (e.at("ph") == "M" && e.at("name") == "thread_name") tracks.insert(e.at("args").at("name").get<std::string>());
  EXPECT_TRUE(tracks.contains("pipeline stage 0") && tracks.contains("pipeline stage 3") &&
              tracks.contains("data-parallel gradients") && tracks.contains("optimizer"))
      << events.dump().substr(0, 400);

  const Result host = tessera("train --steps 1 --json " + json);
  EXPECT_NE(host.exit_code, 0);
  EXPECT_TRUE(contains(host.output, "--json and --trace describe one step on a machine")) << host.output;

  const Result side = tessera("compare --train -m gpt2-xl --arch 16xwse2,64xh100,gc200 --global-batch 256");
  ASSERT_EQ(side.exit_code, 0) << side.output;
  EXPECT_TRUE(contains(side.output, "16xwse2          16")) << side.output;
  EXPECT_TRUE(contains(side.output, "64xh100          64")) << side.output;
  EXPECT_TRUE(contains(side.output, "gc200        does not run")) << side.output;
  const Result mixed = tessera("compare --train --gen 4");
  EXPECT_NE(mixed.exit_code, 0);
  EXPECT_TRUE(contains(mixed.output, "--gen is for inference, not --train")) << mixed.output;
}

// Hugging Face model directories (tools/gen_hf_dirs.py wrote them with PyTorch's greedy
// continuation): a GPT-2 with GPT2LMHeadModel's tensor names and a Llama sharded over two files
// run from their config.json on the host, a wafer and a GPU with PyTorch's tokens; fields tessera
// does not model are refused by name.
TEST(Cli, HuggingFaceDirectoriesRunWithPyTorchsTokens) {
  for (const char* family : {"gpt2", "llama"}) {
    const std::string dir = std::string(TESSERA_SOURCE_DIR) + "/tests/data/hf/" + family;
    const nlohmann::json expected = nlohmann::json::parse(read_all(dir + "/expected.json"));
    const std::string prompt = expected["prompt"].get<std::string>();
    for (const char* arch : {"host", "wse2", "h100"}) {
      const Result r = tessera(
          fmt::format("run -m {} --arch {} -n {} -t 0 -q -p \"{}\"", dir, arch, expected["greedy"].size(), prompt));
      ASSERT_EQ(r.exit_code, 0) << family << " on " << arch << ": " << r.output;
      EXPECT_TRUE(contains(r.stdout_text, prompt + expected["text"].get<std::string>()))
          << family << " on " << arch << ": " << r.stdout_text;
    }
  }
  const auto base = std::filesystem::temp_directory_path() / "tessera_smoke_hf";
  std::filesystem::remove_all(base);
  const std::string llama = std::string(TESSERA_SOURCE_DIR) + "/tests/data/hf/llama";
  const nlohmann::json config = nlohmann::json::parse(read_all(llama + "/config.json"));
  for (const auto& [field, value, message] : std::vector<std::tuple<std::string, nlohmann::json, std::string>>{
           {"sliding_window", 16, "field 'sliding_window': a 16-token window under a 64-token context"},
           {"attention_bias", true, "field 'attention_bias' is true: biases on the attention projections"},
           {"num_experts_per_tok", 2, "field 'num_experts_per_tok' is not one tessera reads for model_type llama"},
           {"model_type", "t5", "model_type \"t5\" is not a family tessera models"}}) {
    std::filesystem::create_directories(base / field);
    nlohmann::json changed = config;
    changed[field] = value;
    std::ofstream(base / field / "config.json") << changed.dump(2);
    const Result r = tessera("run --arch host -n 1 -m " + (base / field).string());
    EXPECT_EQ(r.exit_code, 1) << field;
    EXPECT_TRUE(contains(r.output, message)) << field << ": " << r.output;
  }
  std::filesystem::remove_all(base);
  // A Mixtral directory (4 experts, 2 per token) runs on the host, a GPU, an IPU and wafers with
  // PyTorch's tokens (a wafer's values from its per-core data plane).
  const std::string mixtral = std::string(TESSERA_SOURCE_DIR) + "/tests/data/hf/mixtral";
  const nlohmann::json expected = nlohmann::json::parse(read_all(mixtral + "/expected.json"));
  const std::string prompt = expected["prompt"].get<std::string>();
  for (const char* arch : {"host", "h100", "gc200", "wse2", "wse3"}) {
    const Result r = tessera(
        fmt::format("run -m {} --arch {} -n {} -t 0 -q -p \"{}\"", mixtral, arch, expected["greedy"].size(), prompt));
    ASSERT_EQ(r.exit_code, 0) << arch << ": " << r.output;
    EXPECT_TRUE(contains(r.stdout_text, prompt + expected["text"].get<std::string>())) << arch << ": " << r.stdout_text;
  }
}

// A BERT directory (tools/gen_bert_dir.py wrote it with PyTorch's masked-LM logits): `run` fills
// its [MASK]s on the host and on every single-chip preset with PyTorch's five most likely tokens at
// each mask (a wafer's values from its per-core data plane, bidirectional attention and the
// head's norm over the columns included); bert-base compares over wafers, GPUs and IPUs
// timing-only as one pass per request; what an encoder cannot do is refused by name.
TEST(Cli, BertFillsMasksOnEveryMachineAsPyTorchDoes) {
  const std::string dir = std::string(TESSERA_SOURCE_DIR) + "/tests/data/hf/bert";
  const nlohmann::json expected = nlohmann::json::parse(read_all(dir + "/expected.json"));
  const nlohmann::json& prompt = expected["prompts"][1];
  const std::string text = prompt["prompt"].get<std::string>();
  const auto base = std::filesystem::temp_directory_path() / "tessera_smoke_bert";
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const Result host = tessera(fmt::format("run -m {} --arch host -q -p \"{}\"", dir, text));
  ASSERT_EQ(host.exit_code, 0) << host.output;
  EXPECT_TRUE(contains(host.stdout_text, fmt::format("[MASK] at token {}: {} ", prompt["masks"][0].get<int>(),
                                                     prompt["top5_tokens"][0][0].get<std::string>())))
      << host.stdout_text;
  for (const char* arch : {"a100", "bow", "gc200", "h100", "h200", "mesh-32x32", "trn1", "trn2", "wse2", "wse3"}) {
    const std::string json = (base / (std::string(arch) + ".json")).string();
    const Result r = tessera(fmt::format("run -m {} --arch {} -q -p \"{}\" --json {}", dir, arch, text, json));
    ASSERT_EQ(r.exit_code, 0) << arch << ": " << r.output;
    EXPECT_TRUE(contains(r.stdout_text, "one pass")) << arch << ": " << r.stdout_text;
    const nlohmann::json out = nlohmann::json::parse(read_all(json));
    EXPECT_EQ(out["tokens"]["prompt_ids"], prompt["ids"]) << arch;
    EXPECT_EQ(out["tokens"]["generated_ids"].size(), 0u) << arch;
    ASSERT_EQ(out["tokens"]["masks"].size(), prompt["masks"].size()) << arch;
    for (size_t m = 0; m < prompt["masks"].size(); ++m) {
      EXPECT_EQ(out["tokens"]["masks"][m]["position"], prompt["masks"][m]) << arch;
      EXPECT_EQ(out["tokens"]["masks"][m]["ids"], prompt["top5"][m]) << arch;
    }
  }
  const Result compare = tessera("compare -m bert-base --arch wse2,h100,gc200,4xh100 --prompt-len 128 --batch 1,8");
  ASSERT_EQ(compare.exit_code, 0) << compare.output;
  EXPECT_TRUE(contains(compare.output, "an encoder: one pass over 128 tokens per request")) << compare.output;
  for (const char* arch : {"wse2 ", "h100 ", "gc200 ", "4xh100 "}) EXPECT_TRUE(contains(compare.output, arch));
  EXPECT_FALSE(contains(compare.output, "  no ")) << compare.output;
  // A BERT shaped for the default model's byte-level BPE vocabulary, which has no [MASK].
  std::ofstream(base / "bert-bpe.yaml") << "name: bert-bpe\nfamily: bert\nvocab_size: 2048\ncontext_length: 64\n"
                                           "d_model: 32\nn_layers: 1\nn_heads: 4\nd_ff: 64\nnorm_eps: 1.0e-12\n"
                                           "tie_embeddings: true\ntype_vocab_size: 2\n";
  for (const auto& [command, message] : std::vector<std::pair<std::string, std::string>>{
           {"run --arch host -m " + dir + " -p \"no mask here\"", "write [MASK] in the prompt"},
           {"run --arch host --weights random -m " + (base / "bert-bpe.yaml").string() + " --tokenizer " +
                std::string(TESSERA_SOURCE_DIR) + "/models/default -p x",
            "is an encoder: it reads WordPiece text"},
           {"eval --arch host -m " + dir + " --text " + std::string(TESSERA_SOURCE_DIR) +
                "/tests/data/text/persuasion-end.txt",
            "perplexity is a decoder's measure"},
           {"compare -m bert-base --arch h100 --numerics --weights random", "'bert-base' is an encoder"},
           {"train -m " + dir + " --seq 32 --steps 1 --tokenizer " + std::string(TESSERA_SOURCE_DIR) +
                "/models/default --text " + std::string(TESSERA_SOURCE_DIR) + "/tests/data/text/persuasion-end.txt",
            "the tokenizer has 2048 tokens"},
           {"run -m bert-base --arch wse2 --no-numerics --prompt-tokens 512", "an encoder's one pass of 512 tokens"}}) {
    const Result r = tessera(command);
    EXPECT_EQ(r.exit_code, 1) << command;
    EXPECT_TRUE(contains(r.output, message)) << command << ": " << r.output;
  }
  // Masked-LM training: with values on the host and in an IPU's order, timing-only on systems.
  const std::string corpus = std::string(TESSERA_SOURCE_DIR) + "/tests/data/text/persuasion-end.txt";
  for (const char* arch : {"", " --arch gc200"}) {
    const Result trained =
        tessera(fmt::format("train -m {} --seq 32 --steps 2 --batch 2 --text {}{} -o {}", dir, corpus, arch,
                            (base / (std::string("trained") + (arch[0] ? "-gc200" : ""))).string()));
    ASSERT_EQ(trained.exit_code, 0) << arch << ": " << trained.output;
    EXPECT_TRUE(contains(trained.output, "steps 2: training loss")) << trained.output;
  }
  const Result refill = tessera(fmt::format("run -m {} --arch host -q -p \"{}\"", (base / "trained").string(), text));
  EXPECT_EQ(refill.exit_code, 0) << refill.output;
  EXPECT_TRUE(contains(refill.stdout_text, "[MASK] at token")) << refill.stdout_text;
  const Result systems =
      tessera("compare --train -m bert-base --arch 16xwse2,8xh100,16xgc200 --seq 128 --global-batch 256");
  ASSERT_EQ(systems.exit_code, 0) << systems.output;
  EXPECT_FALSE(contains(systems.output, "does not run")) << systems.output;
  std::filesystem::remove_all(base);
}

// A GPT-2 exported with torch.onnx (tools/gen_onnx_model.py wrote it with PyTorch's greedy
// continuation) runs from the .onnx file on the host and on every single-chip preset with
// PyTorch's tokens; an export tessera does not raise, or a truncated one, is refused by name.
TEST(Cli, OnnxExportsRunOnEveryMachineWithPyTorchsTokens) {
  const std::string dir = std::string(TESSERA_SOURCE_DIR) + "/tests/data/onnx";
  const std::string tokenizer = std::string(TESSERA_SOURCE_DIR) + "/models/default";
  const nlohmann::json expected = nlohmann::json::parse(read_all(dir + "/expected.json"));
  const auto base = std::filesystem::temp_directory_path() / "tessera_smoke_onnx";
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const std::string prompt = expected["prompt"].get<std::string>();
  const Result host = tessera(fmt::format("run -m {}/gpt2-tiny.onnx --tokenizer {} --arch host -n 12 -t 0 -q -p \"{}\"",
                                          dir, tokenizer, prompt));
  ASSERT_EQ(host.exit_code, 0) << host.output;
  EXPECT_TRUE(contains(host.stdout_text, prompt + expected["text"].get<std::string>())) << host.stdout_text;
  for (const char* arch : {"a100", "bow", "gc200", "h100", "h200", "mesh-32x32", "trn1", "trn2", "wse2", "wse3"}) {
    const std::string json = (base / (std::string(arch) + ".json")).string();
    const Result r =
        tessera(fmt::format("run -m {}/gpt2-tiny.onnx --tokenizer {} --arch {} -n 12 -t 0 -q -p \"{}\" --json {}", dir,
                            tokenizer, arch, prompt, json));
    ASSERT_EQ(r.exit_code, 0) << arch << ": " << r.output;
    const nlohmann::json out = nlohmann::json::parse(read_all(json));
    EXPECT_EQ(out["tokens"]["prompt_ids"], expected["prompt_ids"]) << arch;
    EXPECT_EQ(out["tokens"]["generated_ids"], expected["greedy"]) << arch;
  }
  const Result erf =
      tessera(fmt::format("run -m {}/unsupported.onnx --tokenizer {} --arch host -n 1 -p x", dir, tokenizer));
  EXPECT_EQ(erf.exit_code, 1);
  EXPECT_TRUE(contains(erf.output, "unsupported.onnx: node '/h.0/Erf' (Erf): exact (erf) GELU")) << erf.output;
  const std::string whole = read_all(dir + "/gpt2-tiny.onnx");
  std::ofstream(base / "truncated.onnx", std::ios::binary) << whole.substr(0, whole.size() / 2);
  const Result truncated =
      tessera("run --arch wse2 -n 1 -p x --tokenizer " + tokenizer + " -m " + (base / "truncated.onnx").string());
  EXPECT_EQ(truncated.exit_code, 1);
  EXPECT_TRUE(contains(truncated.output, "truncated.onnx: not an ONNX model")) << truncated.output;
  std::filesystem::remove_all(base);
}

// Checkable outputs: a run with values puts its token ids in the JSON and, with --logits, writes
// the logits each generated token came from as .npy; greedy tokens are their argmax, and the
// wafer's logits are the host's within fp32 tolerance.
TEST(Cli, RunsWriteTheirTokenIdsAndLogits) {
  const auto base = std::filesystem::temp_directory_path() / "tessera_smoke_logits";
  std::filesystem::remove_all(base);
  std::filesystem::create_directories(base);
  const auto npy = [](const std::string& bytes, int64_t& rows, int64_t& cols) {
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    const size_t header = static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8);
    const std::string dict = bytes.substr(10, header);
    EXPECT_EQ(std::sscanf(dict.c_str() + dict.find("'shape': ("), "'shape': (%ld, %ld)", &rows, &cols), 2) << dict;
    EXPECT_EQ((10 + header) % 64, 0u);
    std::vector<float> values(static_cast<size_t>(rows * cols));
    EXPECT_EQ(bytes.size(), 10 + header + values.size() * 4);
    std::memcpy(values.data(), bytes.data() + 10 + header, values.size() * 4);
    return values;
  };
  int64_t rows = 0, cols = 0, host_rows = 0, host_cols = 0;
  ASSERT_EQ(tessera("run -q -n 6 -t 0 --arch wse2 --logits " + (base / "wse2.npy").string() + " --json " +
                    (base / "run.json").string())
                .exit_code,
            0);
  ASSERT_EQ(tessera("run -q -n 6 -t 0 --arch host --logits " + (base / "host.npy").string()).exit_code, 0);
  const std::vector<float> wafer = npy(read_all((base / "wse2.npy").string()), rows, cols);
  const std::vector<float> host = npy(read_all((base / "host.npy").string()), host_rows, host_cols);
  const nlohmann::json run = nlohmann::json::parse(read_all((base / "run.json").string()));
  ASSERT_EQ(rows, 6);
  ASSERT_EQ(cols, 2048);
  ASSERT_EQ(run["tokens"]["generated_ids"].size(), 6u);
  EXPECT_EQ(run["tokens"]["prompt_ids"].size(), run["tokens"]["prompt"].get<size_t>());
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = wafer.begin() + r * cols;
    EXPECT_EQ(std::max_element(row, row + cols) - row,
              run["tokens"]["generated_ids"][static_cast<size_t>(r)].get<int>());
  }
  ASSERT_EQ(host.size(), wafer.size());
  double err = 0, scale = 0;
  for (size_t i = 0; i < host.size(); ++i)
    err = std::max(err, static_cast<double>(std::abs(wafer[i] - host[i]))),
    scale = std::max(scale, static_cast<double>(std::abs(host[i])));
  EXPECT_LT(err / scale, 1e-5) << "the wafer's logits are the host's";
  const Result timing = tessera("run -q --no-numerics --logits " + (base / "x.npy").string());
  EXPECT_EQ(timing.exit_code, 1);
  EXPECT_TRUE(contains(timing.output, "--logits writes the values a run computes")) << timing.output;
  // An encoder's run writes the logits at each [MASK]: the wafer's (its per-core data plane) are
  // PyTorch's (tests/data/hf/bert/expected.json).
  const std::string bert = std::string(TESSERA_SOURCE_DIR) + "/tests/data/hf/bert";
  const nlohmann::json expected = nlohmann::json::parse(read_all(bert + "/expected.json"))["prompts"][0];
  ASSERT_EQ(tessera(fmt::format("run -q -m {} --arch wse2 -p \"{}\" --logits {}", bert,
                                expected["prompt"].get<std::string>(), (base / "bert.npy").string()))
                .exit_code,
            0);
  const std::vector<float> masks = npy(read_all((base / "bert.npy").string()), rows, cols);
  ASSERT_EQ(rows, static_cast<int64_t>(expected["masks"].size()));
  for (int64_t r = 0; r < rows; ++r) {
    const auto want = expected["logits"][std::to_string(expected["masks"][static_cast<size_t>(r)].get<int>())]
                          .get<std::vector<double>>();
    ASSERT_EQ(static_cast<int64_t>(want.size()), cols);
    double bert_err = 0, bert_scale = 0;
    for (int64_t c = 0; c < cols; ++c)
      bert_err = std::max(bert_err, std::abs(masks[static_cast<size_t>(r * cols + c)] - want[static_cast<size_t>(c)])),
      bert_scale = std::max(bert_scale, std::abs(want[static_cast<size_t>(c)]));
    EXPECT_LT(bert_err / bert_scale, 1e-5) << "mask " << r;
  }
  std::filesystem::remove_all(base);
}

namespace {

// A sweep's results lines, sorted by point (the header dropped).
std::vector<std::string> sweep_lines(const std::filesystem::path& file) {
  std::vector<std::string> lines;
  std::istringstream in(read_all(file.string()));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_FALSE(lines.empty());
  if (!lines.empty()) lines.erase(lines.begin());
  const auto point = [](const std::string& l) { return nlohmann::json::parse(l)["point"].get<int64_t>(); };
  std::sort(lines.begin(), lines.end(), [&](const auto& a, const auto& b) { return point(a) < point(b); });
  return lines;
}

// tests/data/sweeps/tiny.yaml with `points` SRAM sizes (x 16 other values), in a fresh directory.
std::filesystem::path sweep_spec(const std::string& name, int sram_steps) {
  std::string yaml = read_all(std::string(TESSERA_SOURCE_DIR) + "/tests/data/sweeps/tiny.yaml");
  const std::string list = "[32KiB, 48KiB, 64KiB]";
  yaml.replace(yaml.find(list), list.size(), fmt::format("{{from: 32KiB, to: 64KiB, steps: {}}}", sram_steps));
  const auto dir = std::filesystem::temp_directory_path() / ("tessera_smoke_sweep_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "spec.yaml") << yaml;
  return dir;
}

}  // namespace

TEST(Cli, SweepKilledMidwayResumesWithoutLosingOrDuplicatingAPoint) {
  const auto dir = sweep_spec("kill", 20);  // 320 points, a few seconds on one thread
  const std::string spec = (dir / "spec.yaml").string(), out = (dir / "out").string();
  const std::string results = out + "/results.jsonl";
  // Started in the background, killed with SIGKILL once 30 points are in.
  const std::string kill = fmt::format(
      "bash -c '{0} sweep {1} -o {2} -j 1 -q >/dev/null 2>&1 & pid=$!; "
      "for i in $(seq 1 600); do n=0; [ -f {3} ] && n=$(wc -l < {3}); [ \"$n\" -gt 30 ] && break; sleep 0.02; done; "
      "kill -9 $pid; wait $pid 2>/dev/null; true'",
      TESSERA_CLI, spec, out, results);
  ASSERT_EQ(std::system(kill.c_str()), 0);
  const size_t before = sweep_lines(results).size();
  ASSERT_GE(before, 30u);
  ASSERT_LT(before, 320u) << "the sweep finished before it was killed; give it more points";
  const Result resumed = tessera(fmt::format("sweep {} -o {} -q", spec, out));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "320 points (")) << resumed.output;
  const auto lines = sweep_lines(results);
  ASSERT_EQ(lines.size(), 320u);
  for (size_t i = 0; i < lines.size(); ++i)
    ASSERT_EQ(nlohmann::json::parse(lines[i])["point"].get<size_t>(), i) << "each point once";
  // The same lines as a run that was never interrupted.
  const Result clean = tessera(fmt::format("sweep {} -o {}/clean -q", spec, dir.string()));
  ASSERT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_EQ(sweep_lines(dir / "clean" / "results.jsonl"), lines);
  // `tessera report DIR` rebuilds the sweep's page from the sweep file its results keep.
  const std::string page = (dir / "page.html").string();
  ASSERT_EQ(tessera(fmt::format("report {} -o {}", out, page)).exit_code, 0);
  EXPECT_EQ(read_all(page), read_all(out + "/report.html"));
  // A spec edited afterwards does not append to (or overwrite) the old results.
  std::ofstream(spec, std::ios::app) << "# edited\n";
  const Result edited = tessera(fmt::format("sweep {} -o {} -q", spec, out));
  EXPECT_NE(edited.exit_code, 0);
  EXPECT_TRUE(contains(edited.output, "another version of sweep 'tiny'")) << edited.output;
  EXPECT_EQ(sweep_lines(results), lines);
}

#ifdef TESSERA_TEST_MPI
TEST(Cli, SweepUnderMpirunWritesWhatASerialRunWrites) {
  const auto dir = sweep_spec("mpi", 3);
  const std::string spec = (dir / "spec.yaml").string();
  const std::string mpi =
      fmt::format("mpirun --allow-run-as-root --oversubscribe -n 2 {} sweep {} -o {}/mpi -q > {}/mpi.log 2>&1",
                  TESSERA_CLI, spec, dir.string(), dir.string());
  ASSERT_EQ(std::system(mpi.c_str()), 0) << read_all((dir / "mpi.log").string());
  EXPECT_TRUE(contains(read_all((dir / "mpi.log").string()), "48 points (0 from an earlier run)"));
  ASSERT_EQ(tessera(fmt::format("sweep {} -o {}/serial -q", spec, dir.string())).exit_code, 0);
  const auto distributed = sweep_lines(dir / "mpi" / "results.jsonl");
  EXPECT_EQ(distributed.size(), 48u);
  EXPECT_EQ(distributed, sweep_lines(dir / "serial" / "results.jsonl"));
  EXPECT_EQ(read_all((dir / "mpi" / "summary.txt").string()), read_all((dir / "serial" / "summary.txt").string()));
}
#endif

TEST(Cli, ArchsAreaComparesEachDieWithItsPublishedArea) {
  const Result r = tessera("archs --area");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "wse2        7nm       850,000")) << r.output;
  EXPECT_TRUE(contains(r.output, "46225  -30.1%")) << r.output;
  EXPECT_TRUE(contains(r.output, "h100        no area section")) << r.output;
}

TEST(Cli, GemmTimesEachAlgorithmAndChecksItsValues) {
  const std::string json = (std::filesystem::temp_directory_path() / "tessera_smoke_gemm.json").string();
  std::filesystem::remove(json);
  const Result r = tessera("gemm -M 40 -K 72 -N 56 --arch mesh-32x32,wse2 --cores 8 --dtype fp16 --json " + json);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.stdout_text, "C[40 x 56] = A[40 x 72] x B[72 x 56] in fp16")) << r.output;
  EXPECT_TRUE(contains(r.stdout_text, "<- fastest")) << r.output;
  const auto j = nlohmann::json::parse(read_all(json));
  ASSERT_EQ(j["machines"].size(), 2u);
  for (const auto& machine : j["machines"]) {
    ASSERT_EQ(machine["algorithms"].size(), 4u);  // summa, cannon, meshgemm, meshgemv
    EXPECT_GT(machine["max_abs_product"].get<double>(), 1.0);
    EXPECT_EQ(machine["values_note"], "");
    double fastest = 1e30;
    for (const auto& a : machine["algorithms"]) {
      EXPECT_LT(a["max_abs_error"].get<double>(), 1e-4) << a["algorithm"];
      // The same 40 x 72 x 56 MACs over 64 cores' peak: no algorithm beats it.
      EXPECT_LE(a["share_of_peak"].get<double>(), 1.0 + 1e-12);
      fastest = std::min(fastest, a["seconds"].get<double>());
    }
    for (const auto& a : machine["algorithms"]) {
      if (a["algorithm"] == machine["chosen"]) {
        EXPECT_EQ(a["seconds"].get<double>(), fastest);
      }
    }
  }
  // Bad requests: an algorithm the machine lacks, a grid larger than the chip, an unknown dtype.
  const Result ipu = tessera("gemm -M 8 -K 8 -N 8 --arch gc200 --algorithm meshgemm");
  EXPECT_NE(ipu.exit_code, 0);
  EXPECT_TRUE(contains(ipu.output, "gc200: no GEMM algorithm 'meshgemm' on gc200")) << ipu.output;
  const Result big = tessera("gemm -M 8 -K 8 -N 8 --arch mesh-32x32 --cores 33");
  EXPECT_NE(big.exit_code, 0);
  EXPECT_TRUE(contains(big.output, "at most 32 x 32")) << big.output;
  const Result dtype = tessera("gemm -M 8 -K 8 -N 8 --dtype int8");
  EXPECT_NE(dtype.exit_code, 0);
  EXPECT_TRUE(contains(dtype.output, "wse2 has no int8 MACs")) << dtype.output;
  std::filesystem::remove(json);
}
