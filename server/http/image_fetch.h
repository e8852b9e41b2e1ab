// Fetching an image named by an http(s):// URL in a chat request (--allow-image-urls), with the
// limits a server facing untrusted clients needs: at most max_bytes (refused from the
// Content-Length or as soon as the body passes it), a total time limit, a bounded number of
// redirects (each one checked again), and no private, loopback, link-local or otherwise
// internal address unless allow_private (the name is resolved once and that address is the one
// connected to, so a second DNS answer cannot point the fetch elsewhere). https verifies the
// server's certificate against the system's CA store.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace flamingo {

struct ImageFetchPolicy {
  bool allow = false;          // --allow-image-urls
  bool allow_private = false;  // --allow-private-image-urls
  int64_t max_bytes = 20 << 20;
  double timeout_s = 10;  // the whole fetch, redirects included
  int32_t max_redirects = 3;
};

struct ParsedUrl {
  std::string scheme;  // "http" | "https"
  std::string host;    // without brackets for IPv6
  int port = 0;
  std::string target;  // path and query, "/" at least
};

// nullopt for anything but http(s)://host[:port][/target] (userinfo refused).
std::optional<ParsedUrl> parse_http_url(std::string_view url);

// True for addresses a server must not be steered to by a client: loopback, private (RFC 1918,
// fc00::/7), link-local, CGNAT (100.64/10), unspecified, multicast, broadcast, IPv4-mapped
// versions of these. `address` is numeric (inet_ntop form); unparsable counts as internal.
bool is_internal_address(const std::string& address);

// The image's bytes. Throws HttpError (400) naming `param` and what went wrong (the flag to
// pass, the address refused, the HTTP status, the size limit, the timeout).
std::string fetch_image_url(std::string_view url, const ImageFetchPolicy& policy,
                            const std::string& param);

}  // namespace flamingo
