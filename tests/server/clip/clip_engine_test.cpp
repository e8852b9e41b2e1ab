// ClipEngine on the golden tiny CLIP: its embeddings are ClipModel's (the same bits), an image
// sent twice in one job, in two jobs, or again later is computed once (the embedding cache),
// jobs queued together share one batch, and a failing batch fails its jobs with a message.
#include "server/clip/clip_engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "model/clip_model.h"
#include "model/clip_tokenizer.h"
#include "model/image_decode.h"
#include "model/image_preprocess.h"

namespace flamingo {
namespace {

const std::string kModel = std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny/model";
const std::string kImages = std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny/images/";

std::unique_ptr<ClipEngine> start_engine() {
  ClipEngineConfig c;
  c.model_dir = kModel;
  c.dtype = "float32";
  return ClipEngine::start(c);
}

ImageInput image(const ClipEngine& e, const std::string& file, uint64_t key) {
  const RgbImage rgb = read_image_file(kImages + file, ImageLimits{}, e.image_config().alpha);
  return {key, preprocess_image(rgb, e.image_config())};
}

EmbedOutcome run(ClipEngine& e, EmbedJob job) {
  std::promise<EmbedOutcome> p;
  e.submit(std::move(job), [&p](EmbedOutcome o) { p.set_value(std::move(o)); });
  return p.get_future().get();
}

TEST(ClipEngine, EmbeddingsAreTheModelsAndAnImageIsComputedOnce) {
  auto engine = start_engine();
  ModelOptions o;
  o.dtype = "float32";
  const auto model = ClipModel::load(kModel, o);
  const ImageInput tri = image(*engine, "green_triangle.png", 1);
  const ImageInput sq = image(*engine, "green_square.png", 2);
  EmbedJob job;
  job.images = {tri, sq, tri};
  job.texts = {engine->tokenizer().encode("a green triangle"), engine->tokenizer().encode("x")};
  const EmbedOutcome a = run(*engine, job);
  ASSERT_TRUE(a.ok) << a.message;
  ASSERT_EQ(a.image_embeddings.size(), 3u);
  EXPECT_EQ(a.image_embeddings[0], a.image_embeddings[2]);
  const at::Tensor want = model->image_embeds(
      at::from_blob(const_cast<float*>(tri.pixels.data()), {1, 3, 40, 40}, at::kFloat));
  EXPECT_TRUE(std::equal(a.image_embeddings[0].begin(), a.image_embeddings[0].end(),
                         want.data_ptr<float>()));
  const at::Tensor text = model->text_embeds({job.texts[0]});
  EXPECT_TRUE(
      std::equal(a.text_embeddings[0].begin(), a.text_embeddings[0].end(), text.data_ptr<float>()));
  EXPECT_EQ(engine->stats().images_embedded, 2);  // the triangle once
  const EmbedOutcome b = run(*engine, job);       // again: both from the cache
  EXPECT_EQ(b.image_embeddings, a.image_embeddings);
  EXPECT_EQ(b.text_embeddings, a.text_embeddings);
  EXPECT_EQ(engine->stats().images_embedded, 2);
  EXPECT_EQ(engine->stats().image_cache_hits, 2);
  EXPECT_EQ(engine->stats().texts_embedded, 4);
}

TEST(ClipEngine, JobsQueuedTogetherShareABatch) {
  auto engine = start_engine();
  // Hold the engine thread in a first job's callback while 8 more queue up.
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, release = false;
  EmbedJob first;
  first.texts = {engine->tokenizer().encode("first")};
  engine->submit(first, [&](EmbedOutcome) {
    std::unique_lock lock(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return entered; });
  }
  std::vector<std::future<EmbedOutcome>> results;
  std::vector<std::promise<EmbedOutcome>> promises(8);
  for (int i = 0; i < 8; ++i) {
    EmbedJob j;
    j.images = {image(*engine, "yellow_square.png", 10 + i)};
    j.texts = {engine->tokenizer().encode("text " + std::to_string(i))};
    results.push_back(promises[i].get_future());
    engine->submit(std::move(j), [&promises, i](EmbedOutcome o) { promises[i].set_value(o); });
  }
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  for (auto& r : results) EXPECT_TRUE(r.get().ok);
  EXPECT_EQ(engine->stats().batches, 1 + 2);  // the first job's texts; then images + texts once
}

TEST(ClipEngine, ABadImageFailsItsBatchWithAMessage) {
  auto engine = start_engine();
  EmbedJob job;
  job.images = {ImageInput{5, std::vector<float>(7, 0.f)}};
  const EmbedOutcome o = run(*engine, job);
  EXPECT_FALSE(o.ok);
  EXPECT_NE(o.message.find("values"), std::string::npos) << o.message;
  EmbedJob fine;
  fine.texts = {engine->tokenizer().encode("still here")};
  EXPECT_TRUE(run(*engine, fine).ok);
}

}  // namespace
}  // namespace flamingo
