// Error type shared by the model layer: every failure the user can cause (bad checkpoint,
// bad image, bad prompt) is reported as a flamingo::Error whose what() is one line naming
// the file, key or value at fault.
#pragma once

#include <stdexcept>
#include <string>

namespace flamingo {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace flamingo
