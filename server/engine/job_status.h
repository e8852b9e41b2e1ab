// How a job ended: the one finish type of the engine. The scheduler reports its sequences'
// ends with it (kLength, kStop), the engine adds the ends it decides (cancel, deadline, ...),
// and front ends map it to their wire names (proto FinishReason and status codes, OpenAI's
// finish_reason). Plain data, torch-free.
#pragma once

namespace flamingo {

enum class JobStatus {
  kLength,     // max_new_tokens reached
  kStop,       // EOS / end-of-utterance / stop string
  kCancelled,  // the client cancelled
  kDeadline,   // the deadline passed
  kRejected,   // could not run (message says why; e.g. the image cache is full)
  kShutdown,   // the server stopped before the job finished (drain timeout)
  kFailed,     // internal error (message)
};

// "length", "stop", "cancelled", "deadline", "rejected", "shutdown", "failed": the name logs,
// metrics and the CLI's finish_reason use.
inline const char* job_status_name(JobStatus s) {
  switch (s) {
    case JobStatus::kLength:
      return "length";
    case JobStatus::kStop:
      return "stop";
    case JobStatus::kCancelled:
      return "cancelled";
    case JobStatus::kDeadline:
      return "deadline";
    case JobStatus::kRejected:
      return "rejected";
    case JobStatus::kShutdown:
      return "shutdown";
    case JobStatus::kFailed:
      return "failed";
  }
  return "?";
}

}  // namespace flamingo
