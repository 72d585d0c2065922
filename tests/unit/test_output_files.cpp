// Which files tessera may replace (its own outputs, recognised by their structure), and what it
// accepts as a run to draw.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "tessera/report/mesh_report.hpp"
#include "tessera/report/output_files.hpp"
#include "test_util.hpp"

using tessera::report::is_tessera_output;

TEST(OutputFiles, JsonIsOursOnlyWithATopLevelTesseraFormat) {
  EXPECT_TRUE(is_tessera_output("{\"format\": \"tessera-mesh-plan\", \"version\": 3}\n"));
  EXPECT_TRUE(is_tessera_output("{\"rows\": [], \"schema\": \"tessera-compare/2\"}\n"));
  EXPECT_FALSE(is_tessera_output("{\"note\": {\"schema\": \"tessera-run/2\"}}\n")) << "nested, not the header";
  EXPECT_FALSE(is_tessera_output("{\"schema\": \"my-run/2\"}\n"));
  EXPECT_FALSE(is_tessera_output("{\"schema\": \"tessera-run/2\", \"cut\": [1, 2")) << "truncated";
  EXPECT_FALSE(is_tessera_output("notes: \"schema\": \"tessera-run/2\"\n")) << "a mention, not JSON";
}

TEST(OutputFiles, CsvIsOursOnlyWithTheWholeHeaderAndRectangularRows) {
  const std::string header = tessera::report::kCompareCsvHeader;
  EXPECT_TRUE(is_tessera_output(header + "\nh100,default,1,1,1,tensor 1,0.1,2,2,1.5,0.5,0.3,memory,,\"a, b\"\n"));
  EXPECT_FALSE(is_tessera_output(header + "\nh100,default\n")) << "a row of another width";
  EXPECT_FALSE(is_tessera_output("kind,name,stage,pattern\n1,2,3,4\n")) << "the start of a header only";
  EXPECT_FALSE(is_tessera_output(header + "\nh100,default,1,1,1,tensor 1,0.1,2,2,1.5,0.5,0.3,memory,,\"a")) << "cut";
}

TEST(OutputFiles, HtmlIsOursOnlyFromItsFixedHeadToItsEnd) {
  const std::string head = tessera::report::kHtmlHead;
  EXPECT_TRUE(is_tessera_output(head + "default on wse2</title></head><body></body></html>\n"));
  EXPECT_FALSE(is_tessera_output(head + "default on wse2</title></head><body>")) << "cut";
  EXPECT_FALSE(is_tessera_output("<!DOCTYPE html>\n<html><head><title>tessera: my page</title></head></html>\n"));
}

// `tessera report` reads run JSON written elsewhere: malformed figures are errors, never reads
// outside an array (issue #16 found heap overflows with short link arrays and stray regions).
TEST(ReportPage, RunJsonFiguresAreCheckedBeforeDrawing) {
  std::ifstream in(TESSERA_SOURCE_DIR "/tests/golden/run-default-mesh-32x32.json");
  const nlohmann::json good = nlohmann::json::parse(in);
  ASSERT_FALSE(tessera::report::html_report(good.dump(), "run.json").empty());
  const auto error_of = [&](const std::function<void(nlohmann::json&)>& mutate) {
    nlohmann::json bad = good;
    mutate(bad);
    return tessera::testing::error_of([&] { tessera::report::html_report(bad.dump(), "run.json"); });
  };
  EXPECT_NE(error_of([](auto& j) {
              j["link_load"]["east"] = nlohmann::json::array({1, 2});
            }).find("link_load has 2 values in a direction"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["link_load"]["width"] = 1000; }).find("does not cover the 32x32 grid"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["stages"][0]["region"]["x"] = 31; }).find("lies outside the 32x32 grid"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["stages"][1]["region"]["y"] = -4; }).find("lies outside"), std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["grid"]["width"] = 65536; }).find("is not a machine tessera simulates"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& j) { j["grid"]["height"] = 0; }).find("is not a machine tessera simulates"),
            std::string::npos);
}
