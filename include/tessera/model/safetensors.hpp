// Reader (and a small fp32 writer) for the Hugging Face safetensors format:
//   u64 little-endian header length N | N bytes of JSON header | raw tensor bytes.
// Every structural property is validated; any byte string either parses or throws Error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace tessera::model {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "I8", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the start of the data section
  uint64_t end = 0;
};

struct SafetensorsIndex {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data section
};

// Parses and validates the header of an in-memory file. `origin` names it in error messages.
SafetensorsIndex parse_safetensors(std::span<const uint8_t> bytes, const std::string& origin);

// A memory-mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const SafetensorsIndex& index() const { return index_; }
  const SafetensorsEntry* find(const std::string& name) const;
  // Converts a F32, F16 or BF16 tensor to fp32 into `out` (size must equal its element count).
  void read_f32(const SafetensorsEntry& entry, std::span<float> out) const;
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  SafetensorsIndex index_;
};

// Writes fp32 tensors (name, shape, values) and string metadata as a safetensors file.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::span<const float> values;
};
void write_safetensors_f32(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                           const std::map<std::string, std::string>& metadata = {});
// The same file's bytes (for writers that replace files atomically).
std::string encode_safetensors_f32(const std::vector<NamedTensor>& tensors,
                                   const std::map<std::string, std::string>& metadata = {});

}  // namespace tessera::model
