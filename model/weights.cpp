#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "model/config.h"
#include "model/error.h"

namespace flamingo {

at::ScalarType stored_scalar_type(const TensorView& view) {
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
  const at::ScalarType stored = stored_scalar_type(*view);
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

bool is_linear_weight(const std::string& name, const TensorView& view) {
  const std::string suffix = ".weight";
  return view.shape.size() == 2 && name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         name.find("embed") == std::string::npos;
}

kernels::PackedWeight WeightLoader::get_linear(const std::string& name,
                                               std::vector<int64_t> shape) {
  if (const TensorView* view = checkpoint_.find(name);
      view != nullptr && view->dtype == StoredDtype::kI8) {
    return get_int8(*view, shape);
  }
  const at::Tensor stored = get_stored(name, std::move(shape));
  kernels::PackedWeight w = pack(stored);
  if (w.data().data_ptr() != stored.data_ptr()) release_pages(*checkpoint_.find(name));
  return w;
}

kernels::PackedWeight WeightLoader::get_int8(const TensorView& view,
                                             const std::vector<int64_t>& shape) {
  if (linear_type_ != kernels::WeightType::kInt8) {
    throw Error(view.file + ": tensor '" + view.name +
                "' is stored int8 (a quantized checkpoint): load it with --weights int8 or auto, "
                "not " +
                kernels::weight_type_name(linear_type_));
  }
  if (view.shape != shape) {
    throw Error(view.file + ": tensor '" + view.name + "' has shape " + shape_string(view.shape) +
                ", expected " + shape_string(shape));
  }
  const std::string scale_name = view.name + kInt8ScaleSuffix;
  const int64_t groups = (shape[1] + kernels::kInt8Group - 1) / kernels::kInt8Group;
  const TensorView* sv = checkpoint_.find(scale_name);
  if (sv != nullptr && sv->dtype != StoredDtype::kF32) {
    throw Error(sv->file + ": tensor '" + scale_name + "' has dtype " +
                stored_dtype_name(sv->dtype) + ", expected F32 (the scales of '" + view.name +
                "')");
  }
  const at::Tensor scales = get_stored(scale_name, {shape[0], groups});
  auto keep = checkpoint_.keep_alive();
  const at::Tensor q = at::from_blob(
      const_cast<std::byte*>(view.data), shape, [keep](void*) mutable { keep.reset(); },
      at::TensorOptions(at::kChar));
  bytes_done_ += static_cast<int64_t>(view.nbytes);
  if (progress_) progress_(bytes_done_, bytes_total_);
  try {
    // Copied into the packed layout: the mapped pages are no longer needed.
    kernels::PackedWeight w = kernels::PackedWeight::from_int8(q, scales, kernels::kInt8Group);
    release_pages(view);
    if (const TensorView* s = checkpoint_.find(scale_name)) release_pages(*s);
    compute_bytes_ += w.bytes();
    return w;
  } catch (const c10::Error& e) {
    throw Error(view.file + ": tensor '" + view.name + "': " + e.what_without_backtrace());
  }
}

kernels::PackedWeight WeightLoader::join_rows(const kernels::PackedWeight& a,
                                              const kernels::PackedWeight& b) {
  return kernels::PackedWeight::join_rows(a, b);
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
