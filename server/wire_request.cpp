#include "server/wire_request.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/unknown_field_set.h>

#include <map>

#include "model/utf8.h"

namespace flamingo {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Why bytes that did not parse as `type` are wrong, found by walking their wire structure
// against the type's descriptor: the first malformed level, invalid UTF-8 string, or
// sub-message that does not parse. nullopt when nothing wrong was found.
std::optional<std::string> diagnose(const std::string& bytes, const Descriptor* type,
                                    const std::string& path, int depth) {
  const std::string where = path.empty() ? "" : " in '" + path + "'";
  if (depth > 32) return "nesting deeper than 32 levels" + where;
  UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) {
    return "malformed protobuf" + where + " (a truncated varint or field, or a bad wire type)";
  }
  std::map<int, int> seen;  // index of each repeated field's next element
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& f = fields.field(i);
    const FieldDescriptor* fd = type->FindFieldByNumber(f.number());
    if (fd == nullptr) continue;  // unknown fields are skipped by the real parse too
    std::string name = path.empty() ? fd->name() : path + "." + fd->name();
    if (fd->is_repeated()) {
      name.append("[").append(std::to_string(seen[f.number()]++)).append("]");
    }
    // A field with another wire type than its declaration's is kept as unknown by protobuf,
    // not an error: only length-delimited values can hold what makes a parse fail.
    if (f.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const std::string& value = f.length_delimited();
    if (fd->type() == FieldDescriptor::TYPE_STRING) {
      const size_t bad = invalid_utf8_at(value);
      if (bad != std::string::npos) {
        return "field '" + name + "' is not valid UTF-8 (byte " + std::to_string(bad) + " of " +
               std::to_string(value.size()) + ")";
      }
    } else if (fd->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (auto why = diagnose(value, fd->message_type(), name, depth + 1)) return why;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> parse_request(const std::string& bytes, google::protobuf::Message& out) {
  out.Clear();
  if (out.ParseFromString(bytes)) return std::nullopt;
  const std::string type = out.GetDescriptor()->full_name();
  const std::optional<std::string> why = diagnose(bytes, out.GetDescriptor(), "", 0);
  return "request: the " + std::to_string(bytes.size()) + " bytes received are not a valid " +
         type + ": " + why.value_or("the protobuf parser rejected them");
}

}  // namespace flamingo
