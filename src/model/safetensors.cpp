#include "tessera/model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tessera/base/error.hpp"
#include "tessera/base/fs.hpp"
#include "tessera/base/half.hpp"

namespace tessera::model {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit is 100 MB

int dtype_size(const std::string& dtype) {
  static const std::map<std::string, int> sizes = {{"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
                                                   {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
                                                   {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& v, uint64_t data_size,
                             const std::string& origin) {
  auto bad = [&](const std::string& what) { fail("{}: tensor '{}': {}", origin, name, what); };
  if (!v.is_object()) bad("header entry is not a JSON object");
  for (const auto& [key, _] : v.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets") bad("unknown header field '" + key + "'");
  if (!v.contains("dtype") || !v["dtype"].is_string()) bad("missing or non-string 'dtype'");
  if (!v.contains("shape") || !v["shape"].is_array()) bad("missing or non-array 'shape'");
  if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
    bad("'data_offsets' must be [begin, end]");
  SafetensorsEntry e;
  e.name = name;
  e.dtype = v["dtype"].get<std::string>();
  const int element_size = dtype_size(e.dtype);
  if (element_size == 0) bad("unknown dtype '" + e.dtype + "'");
  uint64_t elements = 1;
  for (const auto& dim : v["shape"]) {
    if (!dim.is_number_unsigned()) bad("shape entries must be non-negative integers");
    const uint64_t d = dim.get<uint64_t>();
    if (d > (1ull << 40) || (d != 0 && elements > (1ull << 56) / d)) bad("shape is impossibly large");
    elements *= d;
    e.shape.push_back(static_cast<int64_t>(d));
  }
  for (const auto& off : v["data_offsets"])
    if (!off.is_number_unsigned()) bad("data_offsets must be non-negative integers");
  e.begin = v["data_offsets"][0].get<uint64_t>();
  e.end = v["data_offsets"][1].get<uint64_t>();
  if (e.begin > e.end) bad("data_offsets begin > end");
  if (e.end > data_size)
    bad(fmt::format("data ends at byte {} but the data section has only {} bytes (file truncated?)", e.end, data_size));
  if (e.end - e.begin != elements * static_cast<uint64_t>(element_size))
    bad(fmt::format("{} elements of {} need {} bytes but data_offsets span {}", elements, e.dtype,
                    elements * static_cast<uint64_t>(element_size), e.end - e.begin));
  return e;
}

}  // namespace

SafetensorsIndex parse_safetensors(std::span<const uint8_t> bytes, const std::string& origin) {
  if (bytes.size() < 8)
    fail("{}: not a safetensors file: {} bytes, but the format starts with an 8-byte header length", origin,
         bytes.size());
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[static_cast<size_t>(i)];
  if (header_size > kMaxHeaderBytes)
    fail("{}: not a safetensors file: header length field says {} bytes (limit 100 MB)", origin, header_size);
  if (header_size > bytes.size() - 8)
    fail("{}: truncated: header needs {} bytes but only {} follow the length field", origin, header_size,
         bytes.size() - 8);
  const auto* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  const nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_size, nullptr, false);
  if (header.is_discarded()) fail("{}: header is not valid JSON", origin);
  if (!header.is_object()) fail("{}: header JSON must be an object of tensors", origin);

  SafetensorsIndex index;
  index.data_start = 8 + header_size;
  const uint64_t data_size = bytes.size() - index.data_start;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("{}: __metadata__ must be an object of strings", origin);
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) fail("{}: __metadata__ value '{}' is not a string", origin, key);
        index.metadata[key] = text.get<std::string>();
      }
      continue;
    }
    index.entries.push_back(parse_entry(name, value, data_size, origin));
  }
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : index.entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail("{}: tensors '{}' and '{}' overlap in the data section", origin, by_offset[i - 1]->name, by_offset[i]->name);
  return index;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : origin_(path.string()) {
  // A FIFO or device would block or never end: refuse it before opening.
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) check_input_file(path, kWeightsFile);
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("{}: cannot open weights file: {}", origin_, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", origin_);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail("{}: cannot map file: {}", origin_, std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  try {
    index_ = parse_safetensors({data_, size_}, origin_);
  } catch (...) {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  for (const auto& e : index_.entries)
    if (e.name == name) return &e;
  return nullptr;
}

void SafetensorsFile::read_f32(const SafetensorsEntry& entry, std::span<float> out) const {
  const uint8_t* src = data_ + index_.data_start + entry.begin;
  const size_t bytes = entry.end - entry.begin;
  if (entry.dtype == "F32") {
    TESSERA_ASSERT(out.size() * 4 == bytes);
    std::memcpy(out.data(), src, bytes);
  } else if (entry.dtype == "F16" || entry.dtype == "BF16") {
    TESSERA_ASSERT(out.size() * 2 == bytes);
    const bool is_f16 = entry.dtype == "F16";
    for (size_t i = 0; i < out.size(); ++i) {
      const auto bits = static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8));
      out[i] = is_f16 ? fp16_to_float(bits) : bf16_to_float(bits);
    }
  } else {
    fail("{}: tensor '{}' has dtype {}; tessera loads F32, F16 and BF16 weights", origin_, entry.name, entry.dtype);
  }
}

std::string encode_safetensors_f32(const std::vector<NamedTensor>& tensors,
                                   const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    const uint64_t bytes = t.values.size() * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (char& c : out) {
    c = static_cast<char>(n & 0xff);
    n >>= 8;
  }
  out += text;
  out.reserve(out.size() + offset);
  for (const auto& t : tensors) out.append(reinterpret_cast<const char*>(t.values.data()), t.values.size_bytes());
  return out;
}

void write_safetensors_f32(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                           const std::map<std::string, std::string>& metadata) {
  const std::string bytes = encode_safetensors_f32(tensors, metadata);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot write: {}", path.string(), std::strerror(errno));
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) fail("{}: write failed", path.string());
}

}  // namespace tessera::model
