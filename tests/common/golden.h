// Helpers for tests that read the golden IDEFICS set (tests/golden/idefics-tiny): case names,
// arrays as tensors, and the image index each token attends to. Header-only; torch needed.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "tests/common/golden_cases.h"
#include "tests/common/npy.h"

namespace flamingo::testing {

inline at::Tensor npy_tensor(const NpyArray& a) {
  at::ScalarType t;
  if (a.dtype == "<f4")
    t = at::kFloat;
  else if (a.dtype == "<f8")
    t = at::kDouble;
  else if (a.dtype == "<i8")
    t = at::kLong;
  else if (a.dtype == "<i4")
    t = at::kInt;
  else if (a.dtype == "|u1")
    t = at::kByte;
  else if (a.dtype == "|b1")
    t = at::kBool;
  else
    throw std::runtime_error("npy_tensor: dtype " + a.dtype);
  return at::from_blob(const_cast<uint8_t*>(a.bytes.data()), a.shape, t).clone();
}

inline at::Tensor load_tensor(const std::string& rel) {
  return npy_tensor(load_npy(golden_path(rel)));
}

// image_attention_mask [L, N] (one batch row) -> index of the image each token sees, or -1.
inline std::vector<int32_t> image_of_token_from_mask(const at::Tensor& mask) {
  at::Tensor m = mask.to(at::kLong);
  std::vector<int32_t> out(m.size(0), -1);
  for (int64_t i = 0; i < m.size(0); ++i) {
    for (int64_t j = 0; j < m.size(1); ++j) {
      if (m[i][j].item<int64_t>() != 0) out[i] = static_cast<int32_t>(j);
    }
  }
  return out;
}

}  // namespace flamingo::testing
