// Starting an httplib server. See http_listener.h.
#include "server/http/http_listener.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "model/error.h"

namespace flamingo {

int start_listening(httplib::Server& server, const std::string& host, int port,
                    const std::string& what, const std::string& hint, std::thread& thread) {
  const std::string where = host + ":" + std::to_string(port);
  if (port < 0 || port > 65535) {
    throw Error(what + ": cannot bind " + where + ": port must be in [0, 65535]");
  }
  auto listen_fd = std::make_shared<std::atomic<int>>(-1);
  server.set_socket_options([listen_fd](auto sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd->store(sock);
  });
  errno = 0;
  int bound = -1;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound <= 0) {
    const int err = errno;
    throw Error(what + ": cannot bind " + where +
                (err != 0 ? std::string(": ") + std::strerror(err)
                          : std::string(": the address cannot be resolved or bound")) +
                hint);
  }
  if (const int fd = listen_fd->load(); fd >= 0) ::listen(fd, SOMAXCONN);
  auto returned = std::make_shared<std::atomic<bool>>(false);
  httplib::Server* raw = &server;
  thread = std::thread([raw, returned] {
    raw->listen_after_bind();
    returned->store(true);
  });
  while (!raw->is_running() && !returned->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (returned->load()) {
    thread.join();
    throw Error(what + ": cannot listen on " + where + ": the listen loop ended at once");
  }
  return bound;
}

}  // namespace flamingo
