// flamingo.v1 request messages -> the front-end-neutral requests of server/requests.h. The
// results view the messages' strings: the message must outlive them. Proto types stay here
// and in grpc_service; validation is RequestBuilder's, on the converted request.
#pragma once

#include "flamingo/v1/flamingo.pb.h"
#include "server/requests.h"

namespace flamingo {

GenerateInput to_input(const v1::GenerateRequest& r);
CaptionInput to_input(const v1::CaptionRequest& r);
QuestionInput to_input(const v1::QuestionRequest& r);
ScoreInput to_input(const v1::ScoreRequest& r);

}  // namespace flamingo
