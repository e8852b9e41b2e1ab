// Fetching http(s) image URLs within limits. See image_fetch.h.

#include "server/http/image_fetch.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "server/http/httplib_config.h"
#include "server/http/openai_request.h"

namespace flamingo {
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& what) {
  throw HttpError(400, param + ": " + what, param);
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

bool internal_v4(uint32_t a) {  // host byte order
  auto in = [a](uint32_t net, int bits) {
    return bits == 0 || (a >> (32 - bits)) == (net >> (32 - bits));
  };
  return in(0x00000000, 8) ||   // "this network"
         in(0x0A000000, 8) ||   // 10/8
         in(0x64400000, 10) ||  // 100.64/10 (CGNAT)
         in(0x7F000000, 8) ||   // loopback
         in(0xA9FE0000, 16) ||  // link-local (cloud metadata lives here)
         in(0xAC100000, 12) ||  // 172.16/12
         in(0xC0000000, 24) ||  // 192.0.0/24
         in(0xC0A80000, 16) ||  // 192.168/16
         in(0xC6120000, 15) ||  // 198.18/15 (benchmarking)
         in(0xE0000000, 4) ||   // multicast
         in(0xF0000000, 4);     // reserved, broadcast
}

std::string describe_error(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect";
    case httplib::Error::Read:
      return "reading the response failed (or timed out)";
    case httplib::Error::Write:
      return "sending the request failed";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed";
    case httplib::Error::SSLServerVerification:
      return "TLS: the server's certificate did not verify";
    case httplib::Error::ConnectionTimeout:
      return "connecting timed out";
    default:
      return "the request failed (" + httplib::to_string(e) + ")";
  }
}

}  // namespace

std::optional<ParsedUrl> parse_http_url(std::string_view url) {
  ParsedUrl out;
  if (starts_with_nocase(url, "http://")) {
    out.scheme = "http";
    out.port = 80;
    url.remove_prefix(7);
  } else if (starts_with_nocase(url, "https://")) {
    out.scheme = "https";
    out.port = 443;
    url.remove_prefix(8);
  } else {
    return std::nullopt;
  }
  const size_t end = url.find_first_of("/?#");
  std::string_view authority = url.substr(0, end);
  std::string_view rest = end == std::string_view::npos ? std::string_view() : url.substr(end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  std::string_view port;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) return std::nullopt;
  if (!port.empty() || authority.back() == ':') {
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    out.port = std::stoi(std::string(port));
    if (out.port < 1 || out.port > 65535) return std::nullopt;
  }
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos)
    rest = rest.substr(0, hash);
  std::string target;  // (built by hand: GCC 12 warns falsely on "/" + std::string(rest))
  target.reserve(rest.size() + 1);
  if (rest.empty() || rest.front() != '/') target.push_back('/');
  target.append(rest.data(), rest.size());
  out.target = std::move(target);
  return out;
}

bool is_internal_address(const std::string& address) {
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return internal_v4(ntohl(v4.s_addr));
  in6_addr v6{};
  if (inet_pton(AF_INET6, address.c_str(), &v6) != 1) return true;
  const uint8_t* b = v6.s6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&v6) || IN6_IS_ADDR_V4COMPAT(&v6)) {
    uint32_t a;
    std::memcpy(&a, b + 12, 4);
    return internal_v4(ntohl(a)) || IN6_IS_ADDR_UNSPECIFIED(&v6);
  }
  return IN6_IS_ADDR_UNSPECIFIED(&v6) || IN6_IS_ADDR_LOOPBACK(&v6) ||
         (b[0] & 0xFE) == 0xFC ||                    // fc00::/7 unique local
         (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) ||  // fe80::/10 link-local
         (b[0] == 0xFE && (b[1] & 0xC0) == 0xC0) ||  // fec0::/10 site-local (deprecated)
         b[0] == 0xFF;                               // multicast
}

std::string fetch_image_url(std::string_view url_in, const ImageFetchPolicy& policy,
                            const std::string& param) {
  using Clock = std::chrono::steady_clock;
  if (!policy.allow) {
    bad(param,
        "http(s) image URLs are refused (start the server with --allow-image-urls, or "
        "send the image as a data: URL)");
  }
  const Clock::time_point deadline =
      Clock::now() +
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(policy.timeout_s));
  std::string url(url_in);
  for (int32_t redirects = 0;; ++redirects) {
    const std::optional<ParsedUrl> u = parse_http_url(url);
    if (!u) bad(param, "not a valid http(s) URL (userinfo is not allowed)");
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = getaddrinfo(u->host.c_str(), nullptr, &hints, &found); rc != 0) {
      bad(param, "cannot resolve '" + u->host.substr(0, 100) + "': " + gai_strerror(rc));
    }
    std::string address, refused;
    for (addrinfo* a = found; a != nullptr && address.empty(); a = a->ai_next) {
      char buf[INET6_ADDRSTRLEN] = {};
      const void* src =
          a->ai_family == AF_INET
              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
              : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
      if (inet_ntop(a->ai_family, src, buf, sizeof(buf)) == nullptr) continue;
      if (!policy.allow_private && is_internal_address(buf)) {
        refused = buf;
        continue;
      }
      address = buf;
    }
    freeaddrinfo(found);
    if (address.empty()) {
      bad(param, "'" + u->host.substr(0, 100) + "' is " +
                     (refused.empty() ? std::string("not reachable")
                                      : "a private, loopback or internal address (" + refused +
                                            "); --allow-private-image-urls allows such URLs"));
    }
    const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
    if (left <= 0)
      bad(param, "fetching timed out (the limit is " + std::to_string(policy.timeout_s) + " s)");
    const std::string host_in_url =
        u->host.find(':') != std::string::npos ? "[" + u->host + "]" : u->host;
    httplib::Client client(u->scheme + "://" + host_in_url + ":" + std::to_string(u->port));
    client.set_hostname_addr_map({{u->host, address}});
    const auto sec = static_cast<time_t>(left);
    const auto usec = static_cast<time_t>((left - static_cast<double>(sec)) * 1e6);
    client.set_connection_timeout(sec, usec);
    client.set_read_timeout(sec, usec);
    client.set_write_timeout(sec, usec);
    client.set_follow_location(false);
    client.set_keep_alive(false);
    if (u->scheme == "https") client.enable_server_certificate_verification(true);

    int status = 0;
    std::string location, failure;
    std::string body;
    const httplib::Headers headers = {{"Accept", "image/png, image/jpeg, image/*"},
                                      {"User-Agent", "flamingo-serve"}};
    const httplib::Result r = client.Get(
        u->target, headers,
        [&](const httplib::Response& resp) {
          status = resp.status;
          if (status >= 300 && status < 400) {
            location = resp.get_header_value("Location");
            return false;
          }
          if (status != 200) return false;
          const std::string length = resp.get_header_value("Content-Length");
          if (!length.empty() && length.size() < 19 && std::stoll(length) > policy.max_bytes) {
            failure = length + " bytes (Content-Length) exceed the limit " +
                      std::to_string(policy.max_bytes) + " (--max-image-bytes)";
            return false;
          }
          return true;
        },
        [&](const char* data, size_t n) {
          if (static_cast<int64_t>(body.size() + n) > policy.max_bytes) {
            failure = "the image passed the limit " + std::to_string(policy.max_bytes) +
                      " bytes (--max-image-bytes)";
            return false;
          }
          if (Clock::now() > deadline) {
            failure =
                "fetching timed out (the limit is " + std::to_string(policy.timeout_s) + " s)";
            return false;
          }
          body.append(data, n);
          return true;
        });
    if (!failure.empty()) bad(param, failure);
    if (status >= 300 && status < 400) {
      if (location.empty()) bad(param, "HTTP " + std::to_string(status) + " without a Location");
      if (redirects >= policy.max_redirects) {
        bad(param, "more than " + std::to_string(policy.max_redirects) + " redirects");
      }
      if (location.front() == '/') {
        location = u->scheme + "://" + host_in_url + ":" + std::to_string(u->port) + location;
      }
      url = location;
      continue;
    }
    if (status != 0 && status != 200) {
      bad(param, "fetching the image answered HTTP " + std::to_string(status));
    }
    if (!r) bad(param, "fetching the image: " + describe_error(r.error()));
    if (body.empty()) bad(param, "the fetched image is empty");
    return body;
  }
}

}  // namespace flamingo
