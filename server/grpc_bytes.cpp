#include "server/grpc_bytes.h"

#include <optional>
#include <string>
#include <vector>

#include "server/wire_request.h"

namespace flamingo {

grpc::Status parse_request(const grpc::ByteBuffer& bytes, google::protobuf::Message& out) {
  std::string data;
  if (bytes.Valid()) {
    std::vector<grpc::Slice> slices;
    if (!bytes.Dump(&slices).ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "request: the message bytes could not be read");
    }
    for (const grpc::Slice& s : slices) {
      data.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  if (std::optional<std::string> error = flamingo::parse_request(data, out)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, *error);
  }
  return grpc::Status::OK;
}

void serialize_response(const google::protobuf::Message& message, grpc::ByteBuffer& out) {
  const std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer buffer(&slice, 1);
  out.Swap(&buffer);
}

}  // namespace flamingo
