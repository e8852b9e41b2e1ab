// SafetensorsWriter: what it writes reads back through SafetensorsFile (names, dtypes, shapes,
// bytes, metadata), every tensor aligned to its element size, the file in place only after
// finish(); out-of-order, wrong-size and unfinished writes are errors that leave no file.
#include "model/safetensors_writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "model/error.h"
#include "tests/common/process.h"

namespace flamingo {
namespace {

using testing::TempDir;

TEST(SafetensorsWriter, RoundTripsThroughTheReaderAligned) {
  TempDir dir("flamingo_stwriter");
  const std::string path = dir.file("a.safetensors");
  const std::vector<int8_t> q = {1, -2, 3};  // 3 bytes: would misalign what follows
  const std::vector<float> s = {0.5f, 2.f};
  const std::vector<uint16_t> h = {0x3f80, 0x4000, 0x4040, 0x4080};
  SafetensorsWriter w(path,
                      {{"q", StoredDtype::kI8, {1, 3}},
                       {"s", StoredDtype::kF32, {2}},
                       {"h", StoredDtype::kBF16, {2, 2}}},
                      {{"format", "pt"}});
  ASSERT_EQ(w.order().size(), 3u);
  EXPECT_EQ(w.order()[0].name, "s");  // largest element first
  EXPECT_EQ(w.order()[2].name, "q");
  w.write("s", s.data(), 8);
  w.write("h", h.data(), 8);
  EXPECT_FALSE(std::filesystem::exists(path));
  w.write("q", q.data(), 3);
  w.finish();
  EXPECT_EQ(w.data_bytes(), 19u);
  const SafetensorsFile f(path);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const TensorView& tq = f.tensors().at("q");
  const TensorView& ts = f.tensors().at("s");
  const TensorView& th = f.tensors().at("h");
  EXPECT_EQ(tq.dtype, StoredDtype::kI8);
  EXPECT_EQ(th.shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(std::memcmp(tq.data, q.data(), 3), 0);
  EXPECT_EQ(std::memcmp(ts.data, s.data(), 8), 0);
  EXPECT_EQ(std::memcmp(th.data, h.data(), 8), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ts.data) % 4, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(th.data) % 2, 0u);
}

TEST(SafetensorsWriter, MisuseIsAnErrorAndLeavesNoFile) {
  TempDir dir("flamingo_stwriter");
  const std::string path = dir.file("b.safetensors");
  const float x[2] = {1.f, 2.f};
  {
    SafetensorsWriter w(path, {{"a", StoredDtype::kF32, {2}}, {"b", StoredDtype::kF32, {1}}});
    EXPECT_THROW(w.write("b", x, 4), Error);  // out of order
    EXPECT_THROW(w.write("a", x, 4), Error);  // wrong size
    w.write("a", x, 8);
    EXPECT_THROW(w.finish(), Error);  // "b" not written
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  EXPECT_THROW(
      SafetensorsWriter(path, {{"a", StoredDtype::kF32, {2}}, {"a", StoredDtype::kF32, {2}}}),
      Error);
  EXPECT_THROW(SafetensorsWriter(dir.file("missing/c.safetensors"), {}), Error);
}

}  // namespace
}  // namespace flamingo
