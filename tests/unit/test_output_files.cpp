// Which files tessera may replace: its own outputs, recognised by their structure.
#include <gtest/gtest.h>

#include <string>

#include "tessera/report/output_files.hpp"

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
  EXPECT_TRUE(is_tessera_output(header + "\nh100,default,1,1,1,tensor 1,0.1,2,2,0.5,0.3,memory,,\"a, b\"\n"));
  EXPECT_FALSE(is_tessera_output(header + "\nh100,default\n")) << "a row of another width";
  EXPECT_FALSE(is_tessera_output("kind,name,stage,pattern\n1,2,3,4\n")) << "the start of a header only";
  EXPECT_FALSE(is_tessera_output(header + "\nh100,default,1,1,1,tensor 1,0.1,2,2,0.5,0.3,memory,,\"a")) << "cut";
}

TEST(OutputFiles, HtmlIsOursOnlyFromItsFixedHeadToItsEnd) {
  const std::string head = tessera::report::kHtmlHead;
  EXPECT_TRUE(is_tessera_output(head + "default on wse2</title></head><body></body></html>\n"));
  EXPECT_FALSE(is_tessera_output(head + "default on wse2</title></head><body>")) << "cut";
  EXPECT_FALSE(is_tessera_output("<!DOCTYPE html>\n<html><head><title>tessera: my page</title></head></html>\n"));
}
