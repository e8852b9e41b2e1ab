// error_of(f): the message of the flamingo::Error that f throws (a test failure when it throws
// none). For tests of bad input; needs GoogleTest.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "model/error.h"

namespace flamingo::testing {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected flamingo::Error";
  return "";
}

}  // namespace flamingo::testing
