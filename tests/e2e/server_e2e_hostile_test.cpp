// The hostile-input suite (issue 11, ctest label e2e): one real flamingo-server on a loopback
// port gets 150+ hostile or odd requests, images made in the test (tests/e2e/hostile_images.h):
// PNGs of every colour type, bit depth and interlacing, truncated and bit-flipped PNG/JPEG,
// bad CRCs, invalid headers, decompression bombs, huge ancillary chunks, other formats, bad
// UTF-8 on the wire, oversized text, thousands of stop strings, NaN sampling values,
// control-token text, too many images and few-shot examples. Each answer is a result where the
// input is valid, else INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a message naming the field;
// never another status. Afterwards the server still answers with every KV block free, and its
// resident memory is reported against the baseline taken after a warm-up (the suite runs four
// times, with small caches: RSS must stay within 10% of the baseline, and the last pass within
// 7.5% of it above the first).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "tests/e2e/hostile_images.h"
#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

using grpc::StatusCode;

// The server's limits in this suite (flags below).
constexpr int kMaxImages = 4;
constexpr int64_t kMaxImageBytes = 4'000'000;
constexpr int64_t kMaxPixels = 2'000'000;
constexpr int kMaxStops = 16;
constexpr int64_t kMaxTextBytes = 100'000;

enum class Expect {
  kOk,        // a valid input: a result
  kRejected,  // INVALID_ARGUMENT or RESOURCE_EXHAUSTED, the message naming `parts`
  kEither,    // valid as far as the format goes but garbled (a flipped JPEG bit): either
};

struct HostileCase {
  std::string name;
  std::function<grpc::Status(v1::Flamingo::Stub&)> call;
  Expect expect;
  std::vector<std::string> parts;
};

grpc::Status generate(v1::Flamingo::Stub& stub, const v1::GenerateRequest& req) {
  return call_generate(stub, req, Ms(60000)).status;
}

// An image then a short text, two new tokens.
std::function<grpc::Status(v1::Flamingo::Stub&)> image_request(const std::string& bytes) {
  return [bytes](v1::Flamingo::Stub& stub) {
    return generate(stub, generate_request({image_part(bytes), text_part("Describe.")}, 2));
  };
}

std::function<grpc::Status(v1::Flamingo::Stub&)> edited(
    std::function<void(v1::GenerateRequest&)> edit) {
  return [edit](v1::Flamingo::Stub& stub) {
    v1::GenerateRequest req = generate_request({text_part("Hello there")}, 2);
    edit(req);
    return generate(stub, req);
  };
}

const std::vector<std::string> kImageField = {"prompt[0].image"};

void add_png_cases(std::vector<HostileCase>& v) {
  // Every colour type with every bit depth PNG allows, plain and Adam7-interlaced: valid.
  const std::vector<std::pair<int, std::vector<int>>> depths = {
      {0, {1, 2, 4, 8, 16}}, {2, {8, 16}}, {3, {1, 2, 4, 8}}, {4, {8, 16}}, {6, {8, 16}}};
  for (const auto& [color, bits] : depths) {
    for (int bit_depth : bits) {
      for (int interlace : {0, 1}) {
        PngSpec s;
        s.width = 37;
        s.height = 23;
        s.color_type = color;
        s.bit_depth = bit_depth;
        s.interlace = interlace;
        v.push_back({"PngColor" + std::to_string(color) + "Depth" + std::to_string(bit_depth) +
                         (interlace ? "Adam7" : ""),
                     image_request(make_png(s)),
                     Expect::kOk,
                     {}});
      }
    }
  }
  // Odd sizes: valid.
  for (const auto& [w, h, interlace] : std::vector<std::tuple<uint32_t, uint32_t, int>>{
           {1, 1, 0}, {1, 1, 1}, {1, 4000, 0}, {4000, 1, 0}, {2, 3, 1}, {1000, 1000, 0}}) {
    PngSpec s;
    s.width = w;
    s.height = h;
    s.interlace = interlace;
    v.push_back(
        {"PngSize" + std::to_string(w) + "x" + std::to_string(h) + (interlace ? "Adam7" : ""),
         image_request(make_png(s)),
         Expect::kOk,
         {}});
  }
  // Transparency chunks: valid.
  for (const auto& [color, trns] :
       std::vector<std::pair<int, std::string>>{{0, std::string("\0\x10", 2)},
                                                {2, std::string("\0\x10\0\x20\0\x30", 6)},
                                                {3, std::string("\x00\x80\xff", 3)}}) {
    PngSpec s;
    s.color_type = color;
    s.before_idat = png_chunk("tRNS", trns);
    v.push_back(
        {"PngTrnsColor" + std::to_string(color), image_request(make_png(s)), Expect::kOk, {}});
  }
  // Huge or many ancillary chunks: libpng's chunk limits skip them; the image is valid.
  const std::string zeros_50mb = zlib_compress(std::string(50u << 20, '\0'), 9);
  {
    PngSpec s;
    s.before_idat = png_chunk("zTXt", std::string("Comment\0\0", 9) + zeros_50mb);
    v.push_back({"PngZtxtBomb50MB", image_request(make_png(s)), Expect::kOk, {}});
    s.before_idat = png_chunk("iCCP", std::string("icc\0\0", 5) + zeros_50mb);
    v.push_back({"PngIccpBomb50MB", image_request(make_png(s)), Expect::kOk, {}});
    s.before_idat =
        png_chunk("tEXt", "Comment" + std::string(1, '\0') + std::string(1u << 20, 'x'));
    v.push_back({"PngText1MB", image_request(make_png(s)), Expect::kOk, {}});
    s.before_idat = png_chunk("abCd", std::string(1u << 20, 'y'));
    v.push_back({"PngUnknownAncillary1MB", image_request(make_png(s)), Expect::kOk, {}});
    s.before_idat.clear();
    for (int i = 0; i < 2000; ++i)
      s.before_idat += png_chunk("tEXt", "k" + std::string(1, '\0') + "v");
    v.push_back({"Png2000TextChunks", image_request(make_png(s)), Expect::kOk, {}});
  }
  // Declared sizes past --max-image-pixels: refused before decoding.
  for (const auto& [w, h] : std::vector<std::pair<uint32_t, uint32_t>>{
           {100000, 100000}, {65535, 65535}, {2000000, 2}, {1500, 1500}, {0x7fffffff, 1}}) {
    PngSpec s;
    s.width = w;
    s.height = h;
    const std::string idat = zlib_compress(std::string(1000, '\0'));
    v.push_back(
        {"PngDeclared" + std::to_string(w) + "x" + std::to_string(h),
         image_request(make_png(s, &idat)),
         Expect::kRejected,
         {"prompt[0].image", std::to_string(w) + "x" + std::to_string(h), "--max-image-pixels"}});
  }
  {
    // A deflate bomb: a 16 x 16 image whose IDAT inflates to 100 MB (libpng stops inflating
    // once it has the image's rows).
    PngSpec s;
    s.width = s.height = 16;
    const std::string idat = zlib_compress(std::string(100u << 20, '\0'), 9);
    v.push_back({"PngDeflateBomb100MB", image_request(make_png(s, &idat)), Expect::kOk, {}});
  }
  // Invalid header fields (the CRCs are right).
  for (const auto& [name, edit] :
       std::vector<std::pair<std::string, std::function<void(PngSpec&)>>>{
           {"BitDepth3", [](PngSpec& s) { s.bit_depth = 3; }},
           {"BitDepth0", [](PngSpec& s) { s.bit_depth = 0; }},
           {"BitDepth32", [](PngSpec& s) { s.bit_depth = 32; }},
           {"ColorType1", [](PngSpec& s) { s.color_type = 1; }},
           {"ColorType5", [](PngSpec& s) { s.color_type = 5; }},
           {"ColorType7", [](PngSpec& s) { s.color_type = 7; }},
           {"RgbDepth4", [](PngSpec& s) { s.bit_depth = 4; }},
           {"PaletteDepth16", [](PngSpec& s) { s.color_type = 3, s.bit_depth = 16; }},
           {"Compression1", [](PngSpec& s) { s.compression = 1; }},
           {"Filter1", [](PngSpec& s) { s.filter = 1; }},
           {"Interlace2", [](PngSpec& s) { s.interlace = 2; }},
           {"ZeroWidth", [](PngSpec& s) { s.width = 0; }},
           {"ZeroHeight", [](PngSpec& s) { s.height = 0; }},
       }) {
    PngSpec s;
    edit(s);
    const std::string idat = zlib_compress(std::string(200, '\0'));
    v.push_back(
        {"PngHeader" + name, image_request(make_png(s, &idat)), Expect::kRejected, kImageField});
  }
  // A valid 64 x 48 RGB PNG, then broken copies of it.
  PngSpec base;
  base.width = 64;
  base.height = 48;
  const std::string png = make_png(base);
  const size_t idat_end = png.size() - 12;  // IEND is the last 12 bytes
  for (size_t cut :
       {size_t{1}, size_t{4}, size_t{8}, size_t{12}, size_t{20}, size_t{29}, size_t{33}, size_t{40},
        png.size() / 2, png.size() * 3 / 4, idat_end - 5, idat_end - 1}) {
    v.push_back({"PngTruncatedAt" + std::to_string(cut), image_request(png.substr(0, cut)),
                 Expect::kRejected, kImageField});
  }
  // Flips: the signature, IHDR's data and CRC, IDAT's data at several places (its CRC).
  for (size_t at :
       {size_t{0}, size_t{3}, size_t{17}, size_t{25}, size_t{30}, size_t{45}, size_t{60},
        png.size() / 3, png.size() / 2, idat_end - 30, idat_end - 6, idat_end - 2}) {
    std::string bad = png;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    v.push_back(
        {"PngFlipAt" + std::to_string(at), image_request(bad), Expect::kRejected, kImageField});
  }
  {
    const uint32_t zero = 0;
    const std::string idat = zlib_compress(png_image_data(base));
    v.push_back({"PngIdatCrcZero",
                 image_request(kPngSignature + png_ihdr(base) + png_chunk("IDAT", idat, &zero) +
                               png_chunk("IEND", "")),
                 Expect::kRejected, kImageField});
    std::string lying = kPngSignature + png_ihdr(base);
    put_u32(lying, 0x7fffffff);
    lying += "IDAT" + idat;
    v.push_back({"PngIdatLengthHuge", image_request(lying), Expect::kRejected, kImageField});
    v.push_back({"PngNoIdat", image_request(kPngSignature + png_ihdr(base) + png_chunk("IEND", "")),
                 Expect::kRejected, kImageField});
    v.push_back({"PngEmptyIdat",
                 image_request(kPngSignature + png_ihdr(base) + png_chunk("IDAT", "") +
                               png_chunk("IEND", "")),
                 Expect::kRejected, kImageField});
    const std::string half = zlib_compress(png_image_data(base).substr(0, 64 * 3 * 20));
    v.push_back({"PngIdatHalfTheRows", image_request(make_png(base, &half)), Expect::kRejected,
                 kImageField});
    const std::string not_zlib(300, 'z');
    v.push_back({"PngIdatNotZlib", image_request(make_png(base, &not_zlib)), Expect::kRejected,
                 kImageField});
    PngSpec palette = base;
    palette.color_type = 3;
    std::string no_plte = kPngSignature + png_ihdr(palette) +
                          png_chunk("IDAT", zlib_compress(png_image_data(palette))) +
                          png_chunk("IEND", "");
    v.push_back({"PngPaletteWithoutPlte", image_request(no_plte), Expect::kRejected, kImageField});
    v.push_back({"PngSignatureOnly", image_request(kPngSignature), Expect::kRejected, kImageField});
  }
}

void add_jpeg_and_other_cases(std::vector<HostileCase>& v) {
  const std::vector<std::pair<std::string, JpegKind>> kinds = {
      {"444", JpegKind::k444},
      {"420", JpegKind::k420},
      {"Gray", JpegKind::kGray},
      {"Cmyk", JpegKind::kCmyk},
      {"Progressive", JpegKind::kProgressive}};
  for (const auto& [name, kind] : kinds) {
    for (const auto& [w, h] : std::vector<std::pair<int, int>>{{64, 48}, {1, 1}, {1, 2000}}) {
      v.push_back({"Jpeg" + name + std::to_string(w) + "x" + std::to_string(h),
                   image_request(make_jpeg(w, h, kind)),
                   Expect::kOk,
                   {}});
    }
  }
  const std::string jpeg = make_jpeg(64, 48, JpegKind::k444);
  for (size_t cut : {size_t{1}, size_t{2}, size_t{10}, size_t{50}, size_t{100}, size_t{200},
                     jpeg.size() / 2, jpeg.size() * 9 / 10, jpeg.size() - 3}) {
    v.push_back({"JpegTruncatedAt" + std::to_string(cut), image_request(jpeg.substr(0, cut)),
                 Expect::kRejected, kImageField});
  }
  for (size_t at : {jpeg.size() * 6 / 10, jpeg.size() * 7 / 10, jpeg.size() * 8 / 10}) {
    std::string bad = jpeg;
    bad[at] = static_cast<char>(bad[at] ^ 0x33);
    v.push_back({"JpegFlipInScanAt" + std::to_string(at), image_request(bad), Expect::kEither,
                 kImageField});
  }
  v.push_back({"JpegDeclared65500x65500",
               image_request(patch_jpeg_size(jpeg, 65500, 65500)),
               Expect::kRejected,
               {"prompt[0].image", "65500x65500", "--max-image-pixels"}});
  v.push_back({"JpegDeclared0x48", image_request(patch_jpeg_size(jpeg, 0, 48)), Expect::kRejected,
               kImageField});
  v.push_back({"JpegDeclared2000x2000",
               image_request(patch_jpeg_size(jpeg, 2000, 2000)),
               Expect::kRejected,
               {"--max-image-pixels"}});
  v.push_back({"JpegSoiOnly", image_request("\xff\xd8"), Expect::kRejected, kImageField});
  v.push_back({"JpegSoiEoi", image_request("\xff\xd8\xff\xd9"), Expect::kRejected, kImageField});
  // Other formats and non-image bytes: refused by the format sniffing.
  std::string random(4096, '\0');
  for (size_t i = 0; i < random.size(); ++i) random[i] = static_cast<char>((i * 2654435761u) >> 13);
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"Gif87a", "GIF87a\x01\x00\x01\x00\x00\x00\x00;"},
           {"Gif89a", "GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!"},
           {"Bmp", "BM" + std::string(60, '\x01')},
           {"WebP", "RIFF\x24\x00\x00\x00WEBPVP8 " + std::string(40, '\x02')},
           {"TiffLittle", "II*\x00" + std::string(40, '\x03')},
           {"TiffBig", "MM\x00*" + std::string(40, '\x03')},
           {"Pdf", "%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"},
           {"Elf",
            "\x7f"
            "ELF\x02\x01\x01" +
                std::string(50, '\0')},
           {"Text", "a photo of a cat"},
           {"Zeros1KB", std::string(1024, '\0')},
           {"OneByte", "\x89"},
           {"Random4KB", random},
           {"PngSignatureThenJpeg", kPngSignature + jpeg},
       }) {
    v.push_back({"NotAnImage" + name, image_request(bytes), Expect::kRejected, kImageField});
  }
  v.push_back({"ImageOverByteLimit",
               image_request(std::string(kMaxImageBytes + 1, 'x')),
               Expect::kRejected,
               {"prompt[0].image", std::to_string(kMaxImageBytes + 1), "--max-image-bytes"}});
}

std::string wire_text_request(const std::string& text) {
  // GenerateRequest { prompt: [Part { text: ... }] }: Part.text is field 1.
  return wire_bytes_field(1, wire_bytes_field(1, text));
}

void add_request_cases(std::vector<HostileCase>& v, const std::string& address) {
  // Invalid UTF-8 on the wire (protobuf's C++ client would refuse to serialize these).
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"LoneContinuation", "abc\x80"},
           {"OverlongSlash", "\xc0\xaf"},
           {"Surrogate", "\xed\xa0\x80"},
           {"ByteFF", "x\xff"},
           {"TruncatedTwoByte", "ok \xc3"},
           {"TruncatedFourByte", "\xf0\x9f\x98"},
           {"AboveU10FFFF", "\xf4\x90\x80\x80"},
       }) {
    v.push_back({"WireUtf8" + name,
                 [address, b = bytes](v1::Flamingo::Stub&) {
                   std::string out;
                   return generic_unary(make_channel(address),
                                        std::string("/") + kServiceName + "/Generate",
                                        wire_text_request(b), &out);
                 },
                 Expect::kRejected,
                 {"prompt[0].text", "UTF-8"}});
  }
  v.push_back({"Text10MB",
               edited([](v1::GenerateRequest& r) {
                 *r.mutable_prompt(0) = text_part(std::string(10u << 20, 'a'));
               }),
               Expect::kRejected,
               {"prompt", "10485760", "--max-text-bytes"}});
  v.push_back({"TextOverLimit",
               edited([](v1::GenerateRequest& r) {
                 *r.mutable_prompt(0) = text_part(std::string(kMaxTextBytes + 1, 'a'));
               }),
               Expect::kRejected,
               {"--max-text-bytes"}});
  v.push_back({"ThousandsOfStopStrings",
               edited([](v1::GenerateRequest& r) {
                 for (int i = 0; i < 5000; ++i) r.add_stop("s" + std::to_string(i));
               }),
               Expect::kRejected,
               {"stop", "5000", "--max-stop-strings"}});
  v.push_back({"StopStringTooLong",
               edited([](v1::GenerateRequest& r) { r.add_stop(std::string(100000, 's')); }),
               Expect::kRejected,
               {"stop[0]", "--max-stop-string-bytes"}});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const auto& [name, value] : std::vector<std::pair<std::string, float>>{
           {"Nan", nan}, {"Inf", inf}, {"MinusInf", -inf}, {"Negative", -1.f}}) {
    v.push_back(
        {"Temperature" + name,
         edited([value](v1::GenerateRequest& r) { r.mutable_sampling()->set_temperature(value); }),
         Expect::kRejected,
         {"sampling.temperature"}});
    v.push_back(
        {"TopP" + name,
         edited([value](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(value); }),
         Expect::kRejected,
         {"sampling.top_p"}});
    v.push_back({"RepetitionPenalty" + name,
                 edited([value](v1::GenerateRequest& r) {
                   r.mutable_sampling()->set_repetition_penalty(value);
                 }),
                 Expect::kRejected,
                 {"sampling.repetition_penalty"}});
  }
  v.push_back({"TopKHuge",
               edited([](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_k(2000000000); }),
               Expect::kOk,
               {}});
  v.push_back({"TopKNegative",
               edited([](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_k(-1); }),
               Expect::kRejected,
               {"sampling.top_k"}});
  v.push_back({"MaxNewTokensHuge",
               edited([](v1::GenerateRequest& r) { r.set_max_new_tokens(2000000000); }),
               Expect::kRejected,
               {"max_new_tokens", "2000000000"}});
  v.push_back({"TopLogprobsNegative",
               edited([](v1::GenerateRequest& r) { r.set_top_logprobs(-5); }),
               Expect::kRejected,
               {"top_logprobs", "-5"}});
  v.push_back({"EmptyPart",
               edited([](v1::GenerateRequest& r) { r.add_prompt(); }),
               Expect::kRejected,
               {"prompt[1]"}});
  // Control-token text is text: a result, no image counted.
  for (const std::string& t :
       {"<image>", "</s>", "<s>", "<unk>", "<fake_token_around_image>", "<end_of_utterance>",
        "<image><image><image><image><image>", "User:<image>\nAssistant:"}) {
    v.push_back({"ControlTokenText" + std::to_string(v.size()),
                 [t](v1::Flamingo::Stub& stub) {
                   const UnaryResult r =
                       call_generate(stub, generate_request({text_part(t)}, 2), Ms(60000));
                   if (r.status.ok() && r.response.usage().images() != 0) {
                     return grpc::Status(StatusCode::INTERNAL,
                                         "text '" + t + "' counted as " +
                                             std::to_string(r.response.usage().images()) +
                                             " images");
                   }
                   return r.status;
                 },
                 Expect::kOk,
                 {}});
  }
  const std::string cat = image_bytes("cat_face_28x28.png");
  v.push_back({"FiftyImages",
               edited([cat](v1::GenerateRequest& r) {
                 for (int i = 0; i < 50; ++i) *r.add_prompt() = image_part(cat);
               }),
               Expect::kRejected,
               {"50 images", "--max-images"}});
  v.push_back({"FewShotFiftyExamples",
               [cat](v1::Flamingo::Stub& stub) {
                 v1::CaptionRequest req;
                 for (int i = 0; i < 50; ++i) {
                   v1::Example* e = req.add_examples();
                   e->mutable_image()->set_data(cat);
                   e->set_text("a cat");
                 }
                 req.mutable_image()->set_data(cat);
                 grpc::ClientContext ctx;
                 set_timeout(ctx, Ms(60000));
                 v1::GenerateResponse resp;
                 return stub.Caption(&ctx, req, &resp);
               },
               Expect::kRejected,
               {"examples", "--max-images"}});
  v.push_back({"ScoreThousandCandidates",
               [](v1::Flamingo::Stub& stub) {
                 v1::ScoreRequest req;
                 *req.add_prompt() = text_part("Hello");
                 for (int i = 0; i < 1000; ++i) req.add_candidates(" w" + std::to_string(i));
                 grpc::ClientContext ctx;
                 set_timeout(ctx, Ms(60000));
                 v1::ScoreResponse resp;
                 return stub.Score(&ctx, req, &resp);
               },
               Expect::kRejected,
               {"candidates", "--max-candidates"}});
}

TEST(HostileInputE2E, EveryCaseGetsAResultOrANamedErrorAndTheServerStaysUp) {
  const std::unique_ptr<ServerProcess> server =
      start_server({"--max-images", std::to_string(kMaxImages), "--max-image-bytes",
                    std::to_string(kMaxImageBytes), "--max-image-pixels",
                    std::to_string(kMaxPixels), "--max-stop-strings", std::to_string(kMaxStops),
                    "--max-text-bytes", std::to_string(kMaxTextBytes), "--max-candidates", "64",
                    // Small caches: their pages are first touched as they fill (the KV pool is
                    // not zeroed at start), which must not pass for a leak.
                    "--kv-cache-mb", "4", "--image-cache-mb", "16"},
                   // A fixed mmap threshold: glibc then returns every large buffer (the 10 MB
                   // text, decoded images) to the system when freed, instead of raising its
                   // threshold and keeping them in the heap, so RSS shows what the server holds.
                   // Two arenas: glibc otherwise opens one more per thread that finds the
                   // others locked, so RSS depended on how the CPU was shared (a pass once
                   // ended 0.3% over the bar with ctest -j2, never alone).
                   true, {"MALLOC_MMAP_THRESHOLD_=131072", "MALLOC_ARENA_MAX=2"});
  const auto stub = make_stub(server->address());
  std::vector<HostileCase> cases;
  add_png_cases(cases);
  add_jpeg_and_other_cases(cases);
  add_request_cases(cases, server->address());
  EXPECT_GE(cases.size(), 150u);

  // Warm-up with valid requests, then the baseline.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(image_request(image_bytes("cat_face_28x28.png"))(*stub).ok());
    ASSERT_TRUE(image_request(make_jpeg(64, 48, JpegKind::k444))(*stub).ok());
  }
  const int64_t baseline_kb = rss_kb(server->pid());
  // Four passes: a leak keeps growing pass after pass (measured without one: 1-4% over the
  // baseline after each pass, the last within 2% of the first, since the engine trims the heap
  // when it goes idle; before that, 2-7% and once 14%: freed pages left in glibc's arenas).
  constexpr int kPasses = 4;
  int64_t after_kb[kPasses] = {};
  int ok = 0, rejected = 0;
  for (int pass = 0; pass < kPasses; ++pass) {
    for (const HostileCase& c : cases) {
      const grpc::Status s = c.call(*stub);
      const bool is_rejection = s.error_code() == StatusCode::INVALID_ARGUMENT ||
                                s.error_code() == StatusCode::RESOURCE_EXHAUSTED;
      if (s.ok()) {
        ok += pass == 0;
        EXPECT_NE(c.expect, Expect::kRejected) << c.name << ": accepted";
        continue;
      }
      rejected += pass == 0;
      EXPECT_TRUE(is_rejection) << c.name << ": status " << s.error_code() << " '"
                                << s.error_message() << "'";
      EXPECT_NE(c.expect, Expect::kOk) << c.name << ": refused: " << s.error_message();
      EXPECT_FALSE(s.error_message().empty()) << c.name;
      for (const std::string& part : c.parts) {
        EXPECT_NE(s.error_message().find(part), std::string::npos)
            << c.name << ": '" << part << "' not in '" << s.error_message() << "'";
      }
      if (verbose() && pass == 0) std::cerr << c.name << ": " << s.error_message() << "\n";
    }
    // Still up and answering, every KV block back.
    EXPECT_TRUE(image_request(image_bytes("cat_face_28x28.png"))(*stub).ok());
    const v1::ModelInfo info = wait_kv_idle(*stub);
    EXPECT_EQ(info.kv_blocks_free(), info.kv_blocks_total()) << "KV blocks leaked";
    after_kb[pass] = rss_kb(server->pid());
  }
  std::cout << "hostile-input suite: " << cases.size() << " cases, " << ok << " answered, "
            << rejected << " refused; server RSS " << baseline_kb / 1024
            << " MiB after warm-up, after each pass:";
  for (int64_t kb : after_kb) std::cout << " " << kb / 1024;
  std::cout << " MiB\n";
  if (kSanitizedBuild) {
    std::cout << "RSS bars not checked in a sanitizer build (its quarantine keeps freed memory)\n";
  } else {
    for (int pass = 0; pass < kPasses; ++pass) {
      EXPECT_LE(after_kb[pass], baseline_kb + baseline_kb / 10) << "pass " << pass;
    }
    EXPECT_LE(after_kb[kPasses - 1], after_kb[0] + baseline_kb * 75 / 1000) << "growth: a leak";
  }
  EXPECT_EQ(stop_server(*server), std::optional<int>(0));
}

}  // namespace
}  // namespace flamingo::e2e
