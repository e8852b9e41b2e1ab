// Fuzz target: a .safetensors file's header and layout (length prefix, JSON header, dtypes,
// shapes, offsets against the file size), parsed the way a checkpoint folder is opened. The
// bytes go to a memfd that SafetensorsFile maps by its /proc path. Errors are flamingo::Error.
#include "model/safetensors.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "model/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd_create("fuzz.safetensors", 0);
  if (fd < 0) return 0;
  size_t written = 0;
  while (written < size) {
    const ssize_t n = write(fd, data + written, size - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  try {
    flamingo::SafetensorsFile file("/proc/self/fd/" + std::to_string(fd));
    for (const auto& [name, t] : file.tensors()) {
      // Every view must lie inside the mapping: touch its first and last byte.
      if (t.nbytes > 0) {
        volatile std::byte first = t.data[0], last = t.data[t.nbytes - 1];
        (void)first;
        (void)last;
      }
      if (static_cast<int64_t>(t.nbytes) !=
          t.numel() * static_cast<int64_t>(flamingo::stored_dtype_size(t.dtype))) {
        __builtin_trap();
      }
    }
  } catch (const flamingo::Error&) {
  }
  close(fd);
  return 0;
}
