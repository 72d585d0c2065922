// Error handling in three tiers (docs/architecture.md):
//  - broken internal invariants are assertions (TESSERA_ASSERT);
//  - bad user input throws tessera::Error, whose message names what, where and how to fix it;
//  - expected outcomes ("does not fit") are returned as Status.
#pragma once

#include <fmt/core.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace tessera {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// The result of a check whose failure is an expected outcome, not a bug.
class Status {
 public:
  static Status ok() { return Status(); }
  static Status failure(std::string message) { return Status(std::move(message)); }
  template <typename... Args>
  static Status failure(fmt::format_string<Args...> format, Args&&... args) {
    return Status(fmt::format(format, std::forward<Args>(args)...));
  }
  bool is_ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& message() const { return message_; }

 private:
  Status() = default;
  explicit Status(std::string message) : ok_(false), message_(std::move(message)) {}
  bool ok_ = true;
  std::string message_;
};

[[noreturn]] void assertion_failed(const char* expression, const char* file, int line);

}  // namespace tessera

#define TESSERA_ASSERT(cond) ((cond) ? static_cast<void>(0) : ::tessera::assertion_failed(#cond, __FILE__, __LINE__))
