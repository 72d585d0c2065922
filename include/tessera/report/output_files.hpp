// Writing output files without losing anything the user wrote.
//
// Contract: an output path may receive tessera's output only if nothing is there yet (its directory
// exists), the file there is empty, or the whole file is one tessera wrote (is_tessera_output), and
// it is not one of the command's inputs. Symlinks to a file are followed; dangling symlinks, loops,
// directories and special files are refused. Every file is written to a temporary file in the same
// directory and renamed into place, so a failed or interrupted write leaves the old file whole.
// All failures are tessera::Error with a one-line message that ends "(nothing was written)".
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::report {

// Whether `text` is a whole file tessera wrote, by its structure rather than a substring:
//  - JSON (plans, run and compare metrics, traces): the whole text parses as one JSON object whose
//    top-level "format" or "schema" member is a string "tessera-...";
//  - CSV: the first line is exactly the header of a CSV tessera writes and every row has its
//    number of fields;
//  - HTML: the page `tessera report` writes, from its fixed head to its closing tag;
//  - SVG: a plot written to a path the user names, from kSvgHead to its closing tag.
bool is_tessera_output(std::string_view text);

// The path an output will be written to (symlinks followed), after the checks in the contract.
// `inputs`: the files the command reads.
std::filesystem::path check_output_path(const std::string& path, const std::vector<std::filesystem::path>& inputs = {});

// A float32 array in NumPy's .npy format (version 1.0, little-endian, C order) of `shape`, whose
// header carries a comment marking it as tessera's (numpy.load reads it as any .npy).
std::string npy_f32(std::span<const float> values, const std::vector<int64_t>& shape);

// Checks `path` (as check_output_path) and writes `bytes` to it atomically.
void write_output(const std::string& path, std::string_view bytes,
                  const std::vector<std::filesystem::path>& inputs = {});

// A directory for many files (heatmaps): it may be new, empty, or one tessera made before (it
// holds a marker file), never a user's own or one that holds an input. check_output_directory
// only checks; prepare_output_directory also creates it and marks it.
std::filesystem::path check_output_directory(const std::string& dir,
                                             const std::vector<std::filesystem::path>& inputs = {});
std::filesystem::path prepare_output_directory(const std::string& dir,
                                               const std::vector<std::filesystem::path>& inputs = {});
// Writes (atomically) the file `name` in a directory prepare_output_directory returned; it
// replaces tessera's own earlier file of that name.
void write_into_output_directory(const std::filesystem::path& dir, const std::string& name, std::string_view bytes);

// The CSV headers tessera writes (report/mesh_report.cpp, report/compare.cpp), for is_tessera_output.
extern const char* const kStepsCsvHeader;
extern const char* const kCompareCsvHeader;
extern const char* const kChipStepsCsvHeader;
extern const char* const kTrainCsvHeader;       // report/training_report.cpp
extern const char* const kValidationCsvHeader;  // report/validation.cpp
// The fixed beginning of the SVG plots tessera writes to a path the user names (report/validation.cpp).
extern const char* const kSvgHead;
// The fixed beginning of every HTML page tessera writes (report/html_report.cpp).
extern const char* const kHtmlHead;

}  // namespace tessera::report
