// The API contract compiles and keeps its names: messages round-trip through the wire
// format, zero values read back as "unset", and the service exposes the six RPCs.
#include <gtest/gtest.h>

#include "flamingo/v1/flamingo.grpc.pb.h"

namespace flamingo {
namespace {

TEST(Proto, GenerateRequestRoundTrips) {
  v1::GenerateRequest req;
  req.add_prompt()->set_text("Question: what is this?");
  req.add_prompt()->mutable_image()->set_data(std::string("\x89PNG", 4));
  req.set_max_new_tokens(16);
  req.mutable_sampling()->set_temperature(0.7f);
  req.add_stop("\n");
  std::string wire;
  ASSERT_TRUE(req.SerializeToString(&wire));
  v1::GenerateRequest back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.prompt(0).text(), "Question: what is this?");
  EXPECT_EQ(back.prompt(1).kind_case(), v1::Part::kImage);
  EXPECT_EQ(back.prompt(1).image().data().size(), 4u);
  EXPECT_FLOAT_EQ(back.sampling().temperature(), 0.7f);
  EXPECT_EQ(back.sampling().top_p(), 0.f);  // unset: the server reads 0 as 1 (off)
  EXPECT_EQ(back.sampling().seed(), 0u);    // unset: the server draws a seed
}

TEST(Proto, FinishReasonNamesAreTheContract) {
  EXPECT_EQ(v1::FinishReason_Name(v1::LENGTH), "LENGTH");
  EXPECT_EQ(v1::FinishReason_Name(v1::STOP), "STOP");
  EXPECT_EQ(v1::FinishReason_Name(v1::CANCELLED), "CANCELLED");
  EXPECT_EQ(v1::FinishReason_Name(v1::FINISH_REASON_UNSPECIFIED), "FINISH_REASON_UNSPECIFIED");
}

TEST(Proto, ServiceHasItsRpcs) {
  const auto* service = v1::GenerateRequest::descriptor()->file()->FindServiceByName("Flamingo");
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->full_name(), "flamingo.v1.Flamingo");
  for (const char* rpc : {"Generate", "GenerateStream", "Caption", "AnswerQuestion", "Score",
                          "GetModelInfo", "Embed", "Classify"}) {
    EXPECT_NE(service->FindMethodByName(rpc), nullptr) << rpc;
  }
  EXPECT_TRUE(service->FindMethodByName("GenerateStream")->server_streaming());
}

}  // namespace
}  // namespace flamingo
