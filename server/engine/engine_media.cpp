// The images of scheduled jobs: a job takes media cache slots for all its images when its first
// sequence is scheduled and keeps them until it ends; every image no entry holds yet is encoded
// in ONE batch per step (an image several jobs share is encoded once).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "model/error.h"
#include "server/engine/cache_sizing.h"
#include "server/engine/engine_impl.h"

namespace flamingo {

bool EngineImpl::acquire_images(const std::vector<ImageInput>& inputs, ImageHold& hold,
                                ImageMisses& misses) {
  if (hold.acquired) return true;
  const size_t misses_before = misses.slots.size();
  for (const ImageInput& im : inputs) {
    const std::optional<MediaCache::Lookup> l = media_->acquire(im.key, image_bytes_);
    if (!l) {
      // Drop this job's misses too: their released slots may be evicted in this very step,
      // and tensors stored into an evicted slot would pass for its next image's.
      misses.slots.resize(misses_before);
      misses.inputs.resize(misses_before);
      release_images(hold);
      return false;
    }
    hold.slots.push_back(l->slot);
    // A miss needs encoding (whatever its slot held before), and so does an entry whose
    // encoding failed before (a hit without tensors).
    if ((!l->hit || !model_->has_image(l->slot)) &&
        std::find(misses.slots.begin(), misses.slots.end(), l->slot) == misses.slots.end()) {
      misses.slots.push_back(l->slot);
      misses.inputs.push_back(&im);
    }
  }
  hold.acquired = true;
  return true;
}

std::vector<std::pair<int32_t, std::string>> EngineImpl::encode_misses(ImageMisses& misses) {
  for (int32_t evicted : media_->take_evicted()) model_->drop_image(evicted);
  std::vector<std::pair<int32_t, std::string>> failed;
  if (misses.slots.empty()) return failed;
  try {
    model_->encode_images(misses.inputs, misses.slots);
  } catch (const std::exception& batch_error) {
    // Find which images fail (a bad image, or memory for the batch): the others go on.
    spdlog::warn("engine: encoding {} images failed ({}); encoding them one by one",
                 misses.slots.size(), batch_error.what());
    for (size_t i = 0; i < misses.slots.size(); ++i) {
      try {
        model_->encode_images(std::span(&misses.inputs[i], 1), std::span(&misses.slots[i], 1));
      } catch (const std::exception& e) {
        failed.emplace_back(misses.slots[i], e.what());
      }
    }
  }
  misses = {};
  return failed;
}

void EngineImpl::release_images(ImageHold& hold) {
  for (int32_t s : hold.slots) media_->release(s);
  hold.slots.clear();
  hold.acquired = false;
}

std::string EngineImpl::image_cache_full() const {
  return "the image cache is full (--image-cache-mb " + mib(media_->budget_bytes()) +
         ", referenced by running requests)";
}

std::span<const int32_t> EngineImpl::held_slots(int64_t seq) const {
  const SeqOwner& o = owners_.at(seq);
  if (o.part >= 0) return scoring_.at(o.job).images.slots;
  return generating_.at(o.job).images.slots;
}

}  // namespace flamingo
