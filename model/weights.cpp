#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "model/error.h"

namespace flamingo {
namespace {

at::ScalarType to_scalar_type(const TensorView& view) {
  switch (view.dtype) {
    case StoredDtype::kF32:
      return at::kFloat;
    case StoredDtype::kF16:
      return at::kHalf;
    case StoredDtype::kBF16:
      return at::kBFloat16;
    case StoredDtype::kF64:
      return at::kDouble;
    default:
      throw Error(view.file + ": tensor '" + view.name + "' has dtype " +
                  stored_dtype_name(view.dtype) + ", expected F32, F16, BF16 or F64");
  }
}

}  // namespace

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

WeightLoader::WeightLoader(const Checkpoint& checkpoint, at::ScalarType dtype,
                           kernels::WeightType linear_type, Progress progress)
    : checkpoint_(checkpoint),
      dtype_(dtype),
      linear_type_(linear_type),
      progress_(std::move(progress)) {
  for (const auto& name : checkpoint_.names()) bytes_total_ += checkpoint_.find(name)->nbytes;
}

at::Tensor WeightLoader::get_stored(const std::string& name, std::vector<int64_t> shape) {
  const TensorView* view = checkpoint_.find(name);
  if (view == nullptr) {
    throw Error(checkpoint_.dir() + ": missing tensor '" + name + "' (expected shape " +
                shape_string(shape) + ")");
  }
  if (view->shape != shape) {
    throw Error(view->file + ": tensor '" + name + "' has shape " + shape_string(view->shape) +
                ", expected " + shape_string(shape));
  }
  const at::ScalarType stored = to_scalar_type(*view);
  const auto elem = static_cast<uintptr_t>(at::elementSize(stored));
  const bool aligned = reinterpret_cast<uintptr_t>(view->data) % elem == 0;
  at::Tensor out;
  if (aligned) {
    auto keep = checkpoint_.keep_alive();
    out = at::from_blob(
        const_cast<std::byte*>(view->data), shape, [keep](void*) mutable { keep.reset(); },
        at::TensorOptions(stored));
  } else {
    out = at::empty(shape, at::TensorOptions(stored));
    std::memcpy(out.data_ptr(), view->data, view->nbytes);
  }
  bytes_done_ += static_cast<int64_t>(view->nbytes);
  if (progress_) progress_(bytes_done_, bytes_total_);
  return out;
}

at::Tensor WeightLoader::get(const std::string& name, std::vector<int64_t> shape) {
  at::Tensor out = get_stored(name, std::move(shape));
  if (out.scalar_type() != dtype_) {
    out = out.to(dtype_);
    release_pages(*checkpoint_.find(name));
  }
  compute_bytes_ += static_cast<int64_t>(out.nbytes());
  return out;
}

kernels::PackedWeight WeightLoader::get_linear(const std::string& name,
                                               std::vector<int64_t> shape) {
  const at::Tensor stored = get_stored(name, std::move(shape));
  kernels::PackedWeight w = pack(stored);
  if (w.data().data_ptr() != stored.data_ptr()) release_pages(*checkpoint_.find(name));
  return w;
}

void WeightLoader::release_pages(const TensorView& view) {
  // The pages wholly inside the tensor: its neighbours may still be zero-copy views.
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(view.data);
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = (begin + view.nbytes) / page * page;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

kernels::PackedWeight WeightLoader::pack(const at::Tensor& dense) {
  // float64 (read like any float checkpoint dtype) has no int8 quantizer: narrowed first.
  const at::Tensor w32 = dense.scalar_type() == at::kDouble ? dense.to(at::kFloat) : dense;
  kernels::PackedWeight w = kernels::PackedWeight::from_dense(w32, linear_type_);
  compute_bytes_ += w.bytes();
  return w;
}

}  // namespace flamingo
