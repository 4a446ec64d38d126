/// \file
/// Stop strings over streamed text: text is released only once it can no longer
/// be the start of a stop string, so a stop string split across tokens is never
/// printed and the output ends exactly before it.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::runtime {

/// Holds back streamed text that may be the start of a stop string, and cuts the
/// text before the first stop string found.
class StopStringMatcher {
 public:
  /// A matcher for stops (empty strings are dropped; none: text passes straight through).
  explicit StopStringMatcher(std::vector<std::string> stops = {}) : stops_(std::move(stops)) {
    std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  }

  /// Appends text; returns what may be shown now. After a match, stopped() is true and nothing more is released.
  std::string push(std::string_view text) {
    if (stopped_) return {};
    held_ += text;
    size_t cut = std::string::npos;
    for (const auto& s : stops_) cut = std::min(cut, held_.find(s));
    if (cut != std::string::npos) {
      stopped_ = true;
      std::string out = held_.substr(0, cut);
      held_.clear();
      return out;
    }
    const size_t keep = longest_partial_suffix();
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
  }
  /// Releases text held back as a possible stop-string prefix (at the end of generation).
  std::string flush() { return stopped_ ? std::string() : std::exchange(held_, {}); }
  /// Whether a stop string has been seen; push() and flush() then return nothing.
  bool stopped() const { return stopped_; }

 private:
  // Length of the longest suffix of held_ that is a proper prefix of some stop string.
  size_t longest_partial_suffix() const {
    size_t best = 0;
    for (const auto& s : stops_)
      for (size_t n = std::min(s.size() - 1, held_.size()); n > best; --n)
        if (std::string_view(held_).substr(held_.size() - n) == std::string_view(s).substr(0, n)) {
          best = n;
          break;
        }
    return best;
  }

  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace tessera::runtime
