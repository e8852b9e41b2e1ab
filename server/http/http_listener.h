// Starting an httplib server the way both of ours (the OpenAI API, the Prometheus endpoint)
// need: SO_REUSEADDR only (httplib's default adds SO_REUSEPORT, which would let a second
// process bind the same port and silently share the traffic), bound to HOST:PORT (0: any
// free port), the listen backlog raised from httplib's 5 to SOMAXCONN (a burst of connections
// otherwise waits on SYN retries, 1 s each), and the listen loop running on its own thread
// before returning (httplib's stop() is a no-op until then, so a stop() right after could be
// lost and hang the join).
#pragma once

#include <string>
#include <thread>

#include "server/http/httplib_config.h"

namespace flamingo {

// Returns the bound port; `thread` runs the listen loop (join it after server.stop()). Throws
// Error "WHAT: cannot bind HOST:PORT: REASON HINT" or "WHAT: cannot listen on ...".
int start_listening(httplib::Server& server, const std::string& host, int port,
                    const std::string& what, const std::string& hint, std::thread& thread);

}  // namespace flamingo
