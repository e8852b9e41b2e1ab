// The golden IDEFICS set's case names and paths (tests/golden/idefics-tiny), torch-free so
// that tokenizer and prompt tests can share them. Header-only.
#pragma once

#include <string>
#include <vector>

namespace flamingo::testing {

inline const std::vector<std::string>& golden_cases() {
  static const std::vector<std::string> kCases = {"case1_single_image_question",
                                                  "case2_two_images_interleaved",
                                                  "case3_text_only",
                                                  "case4_text_before_first_image",
                                                  "case5_three_images_few_shot",
                                                  "case6_two_consecutive_images",
                                                  "case7_image_first",
                                                  "case8_newlines_digits"};
  return kCases;
}

inline std::string golden_path(const std::string& rel) {
  return std::string(FLAMINGO_GOLDEN_DIR) + "/" + rel;
}

}  // namespace flamingo::testing
