// Layouts of the generated Unicode data in model/unicode_tables.cpp (written by
// tools/gen_unicode_tables.py from Python's unicodedata). Internal to model/unicode_classes.cpp;
// use the functions of model/unicode_classes.h instead.
// Torch-free. Thread-safety: constant data.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flamingo::unicode_tables {

// str.lower() maps start + k * stride to itself + delta, for k < count.
struct LowerRun {
  uint32_t start;
  uint16_t count;
  uint8_t stride;
  int32_t delta;
};

// One-step canonical decomposition of `cp` into first (+ second, 0 for a singleton);
// `composes` is 1 for a primary composite (NFC recomposes first + second into cp).
struct Decomposition {
  uint32_t cp;
  uint32_t first;
  uint32_t second;
  uint8_t composes;
};

extern const char kUnicodeVersion[];

// Range tables, sorted by start, the first starting at 0: a code point takes the value of the
// last range starting at or before it. Packed as (start << shift) | value.
extern const uint32_t kCategoryRanges[];  // shift 3
extern const size_t kCategoryRangesSize;
extern const uint32_t kCaseContextRanges[];  // shift 2
extern const size_t kCaseContextRangesSize;
extern const uint32_t kCombiningClassRanges[];  // shift 8
extern const size_t kCombiningClassRangesSize;

extern const LowerRun kLowerRuns[];  // sorted by start, disjoint
extern const size_t kLowerRunsSize;
extern const Decomposition kDecompositions[];  // sorted by cp
extern const size_t kDecompositionsSize;

}  // namespace flamingo::unicode_tables
