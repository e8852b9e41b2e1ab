// Raw gRPC message bytes <-> protos for the raw callback handlers (grpc_service.cpp,
// grpc_clip.cpp). Thread-safe (no state).
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

namespace flamingo {

// Request bytes -> `out`, or INVALID_ARGUMENT saying what is wrong with them (wire_request.h).
grpc::Status parse_request(const grpc::ByteBuffer& bytes, google::protobuf::Message& out);
// A response message -> the raw handler's bytes.
void serialize_response(const google::protobuf::Message& message, grpc::ByteBuffer& out);

}  // namespace flamingo
