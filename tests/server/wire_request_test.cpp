// parse_request: valid request bytes parse as protobuf would; malformed bytes, invalid UTF-8
// in a (nested, repeated) string field and garbage in a sub-message give a message naming the
// message type and, where it can tell, the field path; unknown fields are skipped.
#include "server/wire_request.h"

#include <gtest/gtest.h>

#include <string>

#include "flamingo/v1/flamingo.pb.h"

namespace flamingo {
namespace {

std::string varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
std::string field_bytes(int number, const std::string& value) {
  return varint(static_cast<uint64_t>(number) << 3 | 2) + varint(value.size()) + value;
}
std::string field_varint(int number, uint64_t value) {
  return varint(static_cast<uint64_t>(number) << 3) + varint(value);
}

v1::GenerateRequest sample() {
  v1::GenerateRequest r;
  r.add_prompt()->set_text("A photo of");
  r.add_prompt()->set_text(" a cat");
  r.set_max_new_tokens(7);
  r.add_stop("END");
  return r;
}

TEST(WireRequest, ValidBytesParseAsProtobufDoes) {
  const v1::GenerateRequest want = sample();
  v1::GenerateRequest got;
  got.set_request_id("stale");  // cleared first
  EXPECT_EQ(parse_request(want.SerializeAsString(), got), std::nullopt);
  EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString());
  v1::ModelInfoRequest empty;
  EXPECT_EQ(parse_request("", empty), std::nullopt);
}

TEST(WireRequest, UnknownFieldsAreSkipped) {
  v1::GenerateRequest got;
  const std::string bytes =
      sample().SerializeAsString() + field_bytes(99, "\xff\xfe") + field_varint(98, 5);
  EXPECT_EQ(parse_request(bytes, got), std::nullopt);
  EXPECT_EQ(got.max_new_tokens(), 7);
}

TEST(WireRequest, MalformedBytesNameTheMessageType) {
  v1::GenerateRequest got;
  for (const std::string& bytes :
       {std::string("\xff\xfe\x01\x02garbage"), std::string("\x10\xff", 2),  // truncated varint
        field_bytes(1, "abc").substr(0, 4)}) {                               // truncated field
    const std::optional<std::string> e = parse_request(bytes, got);
    ASSERT_TRUE(e.has_value());
    EXPECT_NE(e->find("request: the " + std::to_string(bytes.size()) +
                      " bytes received are not a valid flamingo.v1.GenerateRequest"),
              std::string::npos)
        << *e;
    EXPECT_NE(e->find("malformed protobuf"), std::string::npos) << *e;
  }
}

TEST(WireRequest, InvalidUtf8NamesTheFieldPath) {
  v1::GenerateRequest got;
  // prompt[1].text is "\xc3\x28" (a lead byte followed by a non-continuation byte).
  const std::string part0 = field_bytes(1, "ok"), part1 = field_bytes(1, "\xc3\x28");
  std::optional<std::string> e = parse_request(field_bytes(1, part0) + field_bytes(1, part1), got);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->find("field 'prompt[1].text' is not valid UTF-8 (byte 0 of 2)"), std::string::npos)
      << *e;
  // stop[0], a repeated top-level string.
  e = parse_request(field_bytes(4, "a\x80"), got);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->find("field 'stop[0]' is not valid UTF-8 (byte 1 of 2)"), std::string::npos) << *e;
  // request_id in a ScoreRequest-like position of another type.
  v1::ScoreRequest score;
  e = parse_request(field_bytes(1, field_bytes(1, "\xed\xa0\x80")), score);  // a surrogate
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->find("flamingo.v1.ScoreRequest"), std::string::npos) << *e;
  EXPECT_NE(e->find("'prompt[0].text'"), std::string::npos) << *e;
}

TEST(WireRequest, NestedGarbageIsNamedAndAWrongWireTypeIsSkippedAsProtobufDoes) {
  v1::GenerateRequest got;
  const std::optional<std::string> e = parse_request(field_bytes(1, "\xff\xff\xff"), got);
  ASSERT_TRUE(e.has_value());
  EXPECT_NE(e->find("malformed protobuf in 'prompt[0]'"), std::string::npos) << *e;
  // prompt sent as a number: protobuf keeps it as an unknown field; the request has no prompt
  // (RequestBuilder then says the prompt is empty).
  EXPECT_EQ(parse_request(field_varint(1, 3), got), std::nullopt);
  EXPECT_EQ(got.prompt_size(), 0);
}

}  // namespace
}  // namespace flamingo
