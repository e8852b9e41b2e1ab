// What a flamingo-cli command sends, read from its flags: the files it names and the prompt
// parts of --prompt (each "<image>" marker takes the next --image file, the text between
// markers becomes text parts, empty pieces are dropped), owned here and viewed by the
// front-end-neutral PromptParts (server/requests.h) that the local engine and the remote
// gRPC request are both built from. Torch-free, proto-free.
#pragma once

#include <string>
#include <vector>

#include "cli/cli_args.h"
#include "server/requests.h"

namespace flamingo::cli {

// Throws flamingo::Error naming the flag and the path.
std::string read_file_bytes(const std::string& flag, const std::string& path);

class CliPrompt {
 public:
  // Throws flamingo::Error when the markers and --image files differ in number or a file
  // cannot be read.
  explicit CliPrompt(const CliArgs& a);
  CliPrompt(const CliPrompt&) = delete;
  CliPrompt& operator=(const CliPrompt&) = delete;

  const std::vector<PromptPart>& parts() const { return parts_; }
  // The flag a request field names, for messages: "prompt[2].image.data" -> "--image PATH".
  std::string flag_of(const std::string& field) const;

 private:
  std::vector<std::string> texts_, images_;  // storage the parts view
  std::vector<std::string> part_flag_;       // per part: "--prompt" or "--image PATH"
  std::vector<PromptPart> parts_;
};

}  // namespace flamingo::cli
