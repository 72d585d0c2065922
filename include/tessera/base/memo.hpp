// The last few results of an expensive pure function of text (parsing a description), kept by
// the text and the origin it came from: plans embed their arch and model descriptions verbatim, and every
// simulation of a plan would otherwise parse them again (half of an analytic-tier run's time).
// Thread-safe; a call that throws caches nothing.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>

namespace tessera {

template <typename Value>
class TextMemo {
 public:
  explicit TextMemo(size_t capacity) : capacity_(capacity) {}

  template <typename Make>
  Value get(const std::string& origin, const std::string& text, Make&& make) {
    {
      const std::lock_guard lock(mutex_);
      for (const Entry& e : entries_)
        if (e.text == text && e.origin == origin) return e.value;
    }
    Value value = make();
    const std::lock_guard lock(mutex_);
    if (entries_.size() >= capacity_) entries_.pop_front();
    entries_.push_back({origin, text, value});
    return value;
  }

 private:
  struct Entry {
    std::string origin, text;
    Value value;
  };
  size_t capacity_;
  std::mutex mutex_;
  std::deque<Entry> entries_;
};

}  // namespace tessera
