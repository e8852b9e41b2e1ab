// Finding and watching the socket of an HTTP request's client. cpp-httplib 0.11 (Debian 12)
// does not tell a handler when its client goes away; the handler's connection is still open
// while the handler (or its content provider) runs, so its descriptor can be found among the
// process's sockets by the two addresses, and polled for the peer's close (POLLRDHUP).
// Linux-only (/proc/self/fd, POLLRDHUP). Thread-safe (no shared state).
#pragma once

#include <string>

namespace flamingo {

// The descriptor of the accepted TCP socket whose peer is remote_addr:remote_port and whose
// local port is local_port, or -1 when none is found.
int client_socket(const std::string& remote_addr, int remote_port, int local_port);

// True when the peer has closed its side (or the socket failed). Never blocks.
bool client_closed(int fd);

}  // namespace flamingo
