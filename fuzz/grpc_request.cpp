// Fuzz target: serialized flamingo.v1 request bytes as they arrive over gRPC, through what the
// service does with them: protobuf parsing (server/wire_request.h, which says why bytes are not a
// request), conversion (server/proto_requests.h) and
// RequestBuilder (limits, UTF-8, image probing and decoding, templates, tokenizing with the
// golden tokenizer). The first byte picks the message: Generate, Caption, AnswerQuestion or
// Score. Errors are flamingo::Error or parse_request's message.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz/request_world.h"
#include "model/error.h"
#include "model/tokenizer.h"
#include "server/proto_requests.h"
#include "server/request_builder.h"
#include "server/wire_request.h"

namespace {

const fuzz::RequestWorld& world() { return fuzz::request_world(); }

template <typename Message, typename Build>
void run(const uint8_t* data, size_t size, Build build) {
  Message m;
  if (flamingo::parse_request(std::string(reinterpret_cast<const char*>(data), size), m)) return;
  try {
    build(flamingo::to_input(m));
  } catch (const flamingo::Error&) {
  }
}

}  // namespace

// protobuf logs every string field with invalid UTF-8 it refuses: not a finding, only noise.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const flamingo::RequestBuilder& b = world().builder;
  const uint8_t* body = data + 1;
  const size_t n = size - 1;
  switch (data[0] % 4) {
    case 0:
      run<flamingo::v1::GenerateRequest>(body, n, [&b](const auto& in) { b.build_generate(in); });
      break;
    case 1:
      run<flamingo::v1::CaptionRequest>(body, n, [&b](const auto& in) { b.build_caption(in); });
      break;
    case 2:
      run<flamingo::v1::QuestionRequest>(body, n, [&b](const auto& in) { b.build_question(in); });
      break;
    default:
      run<flamingo::v1::ScoreRequest>(body, n, [&b](const auto& in) { b.build_score(in); });
  }
  return 0;
}
