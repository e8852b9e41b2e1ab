// End-to-end test of TLS and mutual TLS (issue 11, ctest label e2e): certificates are made here
// with the openssl command (a CA, a server certificate for 127.0.0.1, a client certificate);
// a real server with --tls-cert/--tls-key serves gRPC and HTTPS to clients that trust the CA
// and refuses plaintext; with --tls-client-ca it also refuses clients without a certificate
// the CA signed; flamingo-cli --server connects with --tls-ca (and --tls-cert/--tls-key); bad
// TLS flags and files stop the server at start with a message naming them.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/http/httplib_config.h"
#include "tests/common/process.h"
#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

namespace fs = std::filesystem;
using ::flamingo::testing::CommandResult;
using ::flamingo::testing::run_command;
using grpc::StatusCode;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ca.pem/ca.key, server.pem/server.key (SAN 127.0.0.1, localhost), client.pem/client.key, in a
// fresh folder.
const fs::path& certificates() {
  static const fs::path dir = [] {
    static const fs::path d =
        fs::temp_directory_path() / ("flamingo-tls-" + std::to_string(::getpid()));
    fs::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(d, ec);
    });
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string script =
        "cd '" + d.string() + "' && openssl req -x509 " + ec +
        " -keyout ca.key -out ca.pem -days 2 -subj /CN=flamingo-test-ca && openssl req " + ec +
        " -keyout server.key -out server.csr -subj /CN=localhost && printf "
        "'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && openssl x509 -req -in "
        "server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile "
        "san.ext && openssl req " +
        ec +
        " -keyout client.key -out client.csr -subj /CN=client && openssl x509 -req -in "
        "client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 && openssl "
        "req -x509 " +
        ec + " -keyout other.key -out other.pem -days 2 -subj /CN=stranger > /dev/null 2>&1";
    if (std::system((script + " > /dev/null 2>&1").c_str()) != 0) {
      throw std::runtime_error("openssl failed to make the test certificates in " + d.string());
    }
    return d;
  }();
  return dir;
}

std::string cert(const std::string& name) { return (certificates() / name).string(); }

struct TlsServer {
  std::unique_ptr<ServerProcess> process;
  int http_port = 0;
};

TlsServer start_tls_server(bool mutual) {
  TlsServer s;
  s.http_port = free_port();
  std::vector<std::string> args = {"--tls-cert",  cert("server.pem"),
                                   "--tls-key",   cert("server.key"),
                                   "--http-port", std::to_string(s.http_port)};
  if (mutual) args.insert(args.end(), {"--tls-client-ca", cert("ca.pem")});
  s.process = start_server(args);
  if (!s.process->wait_for_log("http listening on https://", Ms(30000))) {
    throw std::runtime_error("no 'http listening on https' line: " + s.process->describe());
  }
  return s;
}

// Generate over a TLS channel trusting the test CA (with the client certificate `client`, or
// none when empty), or over plaintext when `tls` is false.
grpc::Status generate(const std::string& address, bool tls, const std::string& client = "") {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (tls) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = slurp(cert("ca.pem"));
    if (!client.empty()) {
      o.pem_private_key = slurp(cert(client + ".key"));
      o.pem_cert_chain = slurp(cert(client + ".pem"));
    }
    creds = grpc::SslCredentials(o);
  }
  auto stub = v1::Flamingo::NewStub(grpc::CreateChannel(address, creds));
  grpc::ClientContext ctx;
  set_timeout(ctx, Ms(20000));
  v1::GenerateResponse resp;
  return stub->Generate(&ctx, generate_request({text_part("A cat")}, 2), &resp);
}

// GET path over HTTPS trusting the test CA; -1 when the connection or handshake failed.
int https_get(int port, const std::string& path, const std::string& client = "") {
  // OpenSSL writes with write(): a server that drops a refused handshake must not kill the
  // test with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<httplib::SSLClient> c =
      client.empty() ? std::make_unique<httplib::SSLClient>("127.0.0.1", port)
                     : std::make_unique<httplib::SSLClient>(
                           "127.0.0.1", port, cert(client + ".pem"), cert(client + ".key"));
  c->set_ca_cert_path(cert("ca.pem").c_str());
  c->enable_server_certificate_verification(true);
  c->set_connection_timeout(10, 0);
  const httplib::Result r = c->Get(path.c_str());
  return r ? r->status : -1;
}

TEST(TlsE2E, TlsServesTrustingClientsAndRefusesPlaintext) {
  const TlsServer s = start_tls_server(false);
  EXPECT_NE(s.process->log().find("(TLS; NOT_SERVING"), std::string::npos);
  const grpc::Status ok = generate(s.process->address(), true);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(generate(s.process->address(), false).error_code(), StatusCode::UNAVAILABLE);
  EXPECT_EQ(https_get(s.http_port, "/health"), 200);
  EXPECT_EQ(https_get(s.http_port, "/v1/models"), 200);
  bool plain_answered = false;  // plaintext HTTP on the TLS port: no HTTP response
  try {
    plain_answered = http_get_request(s.http_port, "/health").status == 200;
  } catch (const std::exception&) {
  }
  EXPECT_FALSE(plain_answered);
  // flamingo-cli --server with --tls-ca; without it (plaintext) the call fails.
  const std::string info = kCliBinary + " info --server " + s.process->address();
  const CommandResult cli = run_command(info + " --tls-ca " + cert("ca.pem") + " 2>&1");
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(cli.output.find("\"context_length\""), std::string::npos) << cli.output;
  EXPECT_NE(run_command(info + " --timeout 5 2>&1").exit_code, 0);
}

TEST(TlsE2E, MutualTlsRefusesClientsWithoutACertificateTheCaSigned) {
  const TlsServer s = start_tls_server(true);
  EXPECT_NE(s.process->log().find("(mutual TLS; NOT_SERVING"), std::string::npos);
  const grpc::Status ok = generate(s.process->address(), true, "client");
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(generate(s.process->address(), true).error_code(), StatusCode::UNAVAILABLE);
  EXPECT_EQ(generate(s.process->address(), true, "other").error_code(), StatusCode::UNAVAILABLE);
  EXPECT_EQ(https_get(s.http_port, "/health", "client"), 200);
  EXPECT_EQ(https_get(s.http_port, "/health"), -1);
  EXPECT_EQ(https_get(s.http_port, "/health", "other"), -1);
  const std::string info = kCliBinary + " info --timeout 10 --server " + s.process->address() +
                           " --tls-ca " + cert("ca.pem");
  const CommandResult cli = run_command(info + " --tls-cert " + cert("client.pem") + " --tls-key " +
                                        cert("client.key") + " 2>&1");
  EXPECT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_NE(run_command(info + " 2>&1").exit_code, 0);  // no client certificate
}

// The process's exit code and log after starting it with `args` (it must stop by itself).
std::pair<std::optional<int>, std::string> start_and_exit(std::vector<std::string> args) {
  std::vector<std::string> all = {"--host",         "127.0.0.1", "--port",      "0",
                                  "--metrics-port", "0",         "--http-port", "0"};
  all.insert(all.end(), args.begin(), args.end());
  ServerProcess p(kServerBinary, all);
  const std::optional<int> code = p.wait_exit(Ms(30000));
  return {code, p.log()};
}

TEST(TlsE2E, BadTlsFlagsAndFilesStopTheServerNamingThem) {
  auto [code, log] = start_and_exit({"--tls-cert", cert("server.pem")});
  EXPECT_EQ(code, std::optional<int>(2));
  EXPECT_NE(log.find("--tls-cert needs --tls-key"), std::string::npos) << log;
  std::tie(code, log) = start_and_exit({"--tls-client-ca", cert("ca.pem")});
  EXPECT_EQ(code, std::optional<int>(2));
  EXPECT_NE(log.find("--tls-client-ca needs --tls-cert"), std::string::npos) << log;
  std::tie(code, log) =
      start_and_exit({"--tls-cert", cert("san.ext"), "--tls-key", cert("server.key")});
  EXPECT_EQ(code, std::optional<int>(2));
  EXPECT_NE(log.find("is not a PEM file"), std::string::npos) << log;
  std::tie(code, log) =
      start_and_exit({"--tls-cert", cert("missing.pem"), "--tls-key", cert("server.key")});
  EXPECT_EQ(code, std::optional<int>(2));
  EXPECT_NE(log.find("cannot read"), std::string::npos) << log;
}

}  // namespace
}  // namespace flamingo::e2e
