// Request bytes from the wire -> a request message, with an error a client can act on. The
// gRPC service takes its requests as raw bytes (the generated typed handlers answer bytes that
// do not parse with UNIMPLEMENTED and no message, which tells a client the method does not
// exist); parse_request turns them into INVALID_ARGUMENT naming what was wrong: malformed
// protobuf (a truncated varint or field, a bad wire type), or the request field (a path such as
// "prompt[1].text") whose string is not valid UTF-8, or whose sub-message does not parse.
// (A field sent with another wire type than declared parses, as an unknown field: protobuf's
// rule.)
//
// Thread-safe; torch-free, gRPC-free.
#pragma once

#include <google/protobuf/message.h>

#include <optional>
#include <string>

namespace flamingo {

// Parses `bytes` into `out` (cleared first). nullopt when they parse, else the message for an
// INVALID_ARGUMENT: it starts with "request: " and names the message type and, where it can
// tell, the field. Protobuf only (no gRPC), so that the fuzz target runs it too.
std::optional<std::string> parse_request(const std::string& bytes, google::protobuf::Message& out);

}  // namespace flamingo
