// flamingo-server: binds the gRPC port first (health NOT_SERVING, calls UNAVAILABLE), loads
// the model and warms it up, then serves; SIGTERM/SIGINT drain and exit 0. See
// server/server_args.cpp for the flags and README.md for the API.
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <thread>

#include "model/clip_tokenizer.h"
#include "model/config.h"
#include "model/error.h"
#include "model/install_paths.h"
#include "server/api_keys.h"
#include "server/chat_template.h"
#include "server/clip/clip_engine.h"
#include "server/clip/clip_requests.h"
#include "server/engine/engine.h"
#include "server/grpc_service.h"
#include "server/http/openai_server.h"
#include "server/metrics.h"
#include "server/metrics_http.h"
#include "server/prompt_templates.h"
#include "server/request_builder.h"
#include "server/server_args.h"
#include "server/signal_stop.h"

#ifndef FLAMINGO_DEFAULT_MODEL
#define FLAMINGO_DEFAULT_MODEL ""
#endif
#ifndef FLAMINGO_TEMPLATES_DIR
#define FLAMINGO_TEMPLATES_DIR ""
#endif

namespace flamingo {
namespace {

constexpr const char* kServiceName = "flamingo.v1.Flamingo";

// A template file: the flag's value, else <model>/<in_model>, else the bundled
// templates/<bundled> (model/install_paths.h: FLAMINGO_TEMPLATES_DIR, the installed tree, the
// source tree). `what` and `hint` name it in the error when none exists.
std::string template_path(const std::string& flag_value, const std::string& model_dir,
                          const std::string& in_model, const std::string& bundled_name,
                          const std::string& what, const std::string& hint) {
  if (!flag_value.empty()) return flag_value;
  const std::filesystem::path own = std::filesystem::path(model_dir) / in_model;
  if (std::filesystem::exists(own)) return own.string();
  const std::filesystem::path bundled =
      std::filesystem::path(bundled_templates_dir(FLAMINGO_TEMPLATES_DIR)) / bundled_name;
  if (std::filesystem::exists(bundled)) return bundled.string();
  throw Error("no " + what + ": " + hint + " (" + bundled.string() + " does not exist)");
}

// Caption/AnswerQuestion templates: --templates, flamingo_templates.json, <family>.json.
std::string templates_path(const ServerArgs& args, const std::string& model_dir,
                           const std::string& family) {
  return template_path(args.templates_path, model_dir, "flamingo_templates.json", family + ".json",
                       "prompt templates for model family '" + family + "'",
                       "pass --templates FILE");
}

// The HTTP API's chat template: --chat-template, flamingo_chat_template.json,
// <family>-chat.json.
std::string chat_template_path(const ServerArgs& args, const std::string& model_dir,
                               const std::string& family) {
  return template_path(args.chat_template_path, model_dir, "flamingo_chat_template.json",
                       family + "-chat.json", "chat template for model family '" + family + "'",
                       "pass --chat-template FILE or --http-port 0");
}

// The model folder's name ("/m/idefics-9b/" -> "idefics-9b").
// A CLIP model folder (config.json's model_type "clip"); anything else goes to the IDEFICS
// loader, whose errors name what is wrong.
bool is_clip_folder(const std::string& dir) {
  try {
    return checkpoint_model_type(dir) == "clip";
  } catch (const std::exception&) {
    return false;
  }
}

struct ClipServing {
  std::unique_ptr<ClipEngine> engine;
  std::unique_ptr<ClipRequestBuilder> builder;
};

ClipServing load_clip(const std::string& dir, const ServerArgs& args) {
  spdlog::info("loading CLIP model {}", dir);
  ClipEngineConfig c;
  c.model_dir = dir;
  c.dtype = args.dtype;
  c.weights = args.weights;
  c.threads = args.threads;
  c.cache_bytes = args.clip_cache_mb << 20;
  ClipServing s;
  s.engine = ClipEngine::start(c);
  const ClipDescription& d = s.engine->description();
  s.builder = std::make_unique<ClipRequestBuilder>(s.engine->tokenizer(), s.engine->image_config(),
                                                   args.limits, d.context_length);
  spdlog::info("CLIP loaded: {} (projection {}, image {}, text context {}, dtype {})", dir,
               d.projection_dim, d.image_size, d.context_length, d.dtype);
  return s;
}

std::string folder_name(const std::string& dir) {
  std::filesystem::path p(dir);
  if (!p.has_filename()) p = p.parent_path();
  return p.filename().string();
}

// The largest HTTP body a request within the limits can need: every image base64-encoded at
// its largest, all the text escaped, and room for the JSON around them.
int64_t http_body_limit(const ServerLimits& l) {
  return static_cast<int64_t>(l.max_images_per_request) * ((l.max_image_bytes + 2) / 3 * 4 + 1024) +
         6 * l.max_text_bytes + (1 << 20);
}

int64_t receive_limit(const ServerLimits& l) {
  // Every image at its largest, all the text, and room for the protobuf framing.
  const int64_t bytes = static_cast<int64_t>(l.max_images_per_request) * l.max_image_bytes +
                        l.max_text_bytes + (1 << 20);
  return std::min<int64_t>(bytes, INT_MAX);
}

std::string read_pem(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw Error(flag + ": cannot read '" + path + "'");
  if (text.find("-----BEGIN ") == std::string::npos) {
    throw Error(flag + ": '" + path + "' is not a PEM file (no -----BEGIN line)");
  }
  return text;
}

// gRPC's TLS credentials from --tls-cert / --tls-key (/ --tls-client-ca: client certificates
// required and verified).
std::shared_ptr<grpc::ServerCredentials> tls_credentials(const ServerArgs& args) {
  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back(
      {read_pem("--tls-key", args.tls_key), read_pem("--tls-cert", args.tls_cert)});
  if (!args.tls_client_ca.empty()) {
    options.pem_root_certs = read_pem("--tls-client-ca", args.tls_client_ca);
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

int run(int argc, char** argv) {
  ServerArgs args;
  try {
    args = parse_server_args(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const ServerUsageError& e) {
    std::fprintf(stderr, "flamingo-server: %s\n", e.what());
    return 2;
  }
  if (args.help) {
    std::fputs(server_usage().c_str(), stdout);
    std::printf("\nthe bundled model here (default --model): %s\nthe bundled templates: %s\n",
                bundled_model_dir(FLAMINGO_DEFAULT_MODEL).c_str(),
                bundled_templates_dir(FLAMINGO_TEMPLATES_DIR).c_str());
    return 0;
  }
  // Every HTTP and gRPC connection is a descriptor; a fresh Debian's soft limit is 1024. Take the
  // hard limit (httplib and gRPC poll, so descriptors past FD_SETSIZE are fine).
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("flamingo-server"));  // logs go to stderr
  spdlog::set_level(spdlog::level::from_str(args.log_level));
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  // protobuf logs an ERROR line for every request string that is not UTF-8; such requests are
  // answered INVALID_ARGUMENT naming the field (server/wire_request.h) and logged once with the
  // request, so protobuf's own lines go to debug (any client could otherwise fill the log).
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
        if (level >= google::protobuf::LOGLEVEL_FATAL) {
          spdlog::critical("protobuf: {} ({}:{})", message, file, line);
        } else {
          spdlog::debug("protobuf: {} ({}:{})", message, file, line);
        }
      });
  if (args.model_dir.empty()) args.model_dir = bundled_model_dir(FLAMINGO_DEFAULT_MODEL);
  for (const std::string& line : describe_server_args(args)) spdlog::info("config: {}", line);

  // SIGTERM/SIGINT: SignalStop's handlers write to a pipe that the stop thread reads, so the
  // drain starts whichever thread runs the handler; a library may start threads before main()
  // with every signal unblocked (OpenBLAS's pthread variant), and such a thread may take a
  // process-directed signal. The handlers are installed even where SIGINT was ignored at start
  // (a shell's background jobs) and for PID 1 (a container), which drops signals left at their
  // default action. The threads started from here on block the two signals, which keeps the
  // handler off the engine and gRPC threads (the stop thread unblocks them); nothing depends on
  // that.
  SignalStop signal_stop;
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::atomic<bool> stop_requested{false};
  bool serving = false;  // guarded by stop_mu: set once the model is loaded, before attaching
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  std::thread stop_thread([&] {
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
    const int sig = signal_stop.wait();
    if (sig == SignalStop::kCancelled) return;  // run() is returning
    const char* name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    std::lock_guard lock(stop_mu);
    if (!serving) {
      // Still loading: no request was accepted, nothing to drain; a load can take minutes.
      spdlog::info("received {} while loading: exiting", name);
      spdlog::default_logger()->flush();
      std::_Exit(0);
    }
    spdlog::info("received {}: draining", name);
    stop_requested = true;
    stop_cv.notify_all();
  });
  struct StopThreadJoin {
    SignalStop& stop;
    std::thread& t;
    ~StopThreadJoin() {
      stop.cancel();  // no-op for the thread if it already returned
      t.join();
    }
  } join_stop_thread{signal_stop, stop_thread};

  ApiKeys keys;
  try {
    keys = ApiKeys::load(args.api_key_file, std::getenv("FLAMINGO_API_KEY"));
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  if (keys.enabled()) {
    spdlog::info(
        "API keys: {} (gRPC calls and /v1/ HTTP requests need one; health and /metrics "
        "do not)",
        keys.size());
  } else {
    spdlog::info("no API keys (--api-key-file, FLAMINGO_API_KEY): every client is let in");
  }
  ServerMetrics metrics;
  FlamingoService service(metrics, keys);
  grpc::EnableDefaultHealthCheckService(true);
  if (args.reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int bound_port = 0;
  const std::string address = args.host + ":" + std::to_string(args.port);
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!args.tls_cert.empty()) {
    try {
      credentials = tls_credentials(args);
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
      return 2;
    }
  }
  builder.AddListeningPort(address, credentials, &bound_port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(static_cast<int>(receive_limit(args.limits)));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    spdlog::error("cannot listen on {} (address in use or invalid)", address);
    return 1;
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus("", false);
  health->SetServingStatus(kServiceName, false);
  spdlog::info("listening on {}:{} ({}NOT_SERVING until the model is loaded)", args.host,
               bound_port,
               args.tls_cert.empty()        ? ""
               : args.tls_client_ca.empty() ? "TLS; "
                                            : "mutual TLS; ");

  std::unique_ptr<MetricsHttpServer> metrics_http;
  if (args.metrics_port != 0) {
    metrics_http = std::make_unique<MetricsHttpServer>([&metrics] { return metrics.render(); });
    try {
      const int port = metrics_http->start(args.metrics_host, args.metrics_port);
      spdlog::info("metrics on http://{}:{}/metrics", args.metrics_host, port);
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
      server->Shutdown();
      return 1;
    }
  }

  const bool clip_only = is_clip_folder(args.model_dir);
  std::unique_ptr<OpenAIServer> http;
  if (args.http_port != 0) {
    OpenAIServerConfig hc;
    hc.host = args.http_host.empty() ? args.host : args.http_host;
    hc.port = args.http_port;
    hc.threads = args.http_threads;
    hc.keep_alive_timeout_s = args.http_keep_alive_s;
    hc.served_model_name =
        args.served_model_name.empty() ? folder_name(args.model_dir) : args.served_model_name;
    hc.media.max_image_bytes = args.limits.max_image_bytes;
    hc.media.allowed_local_media_path = args.allowed_local_media_path;
    hc.media.max_n = args.max_choices;
    hc.media.fetch.allow = args.allow_image_urls;
    hc.media.fetch.allow_private = args.allow_private_image_urls;
    hc.media.fetch.timeout_s = args.image_url_timeout_s;
    hc.media.fetch.max_redirects = args.image_url_max_redirects;
    hc.max_body_bytes = http_body_limit(args.limits);
    hc.api_keys = &keys;
    hc.tls_cert = args.tls_cert;
    hc.tls_key = args.tls_key;
    hc.tls_client_ca = args.tls_client_ca;
    http = std::make_unique<OpenAIServer>(hc, metrics, [&metrics] { return metrics.render(); });
    try {
      const int port = http->start();
      spdlog::info("http listening on {}://{}:{} (OpenAI-compatible API, model id '{}')",
                   hc.tls_cert.empty() ? "http" : "https", hc.host, port, hc.served_model_name);
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
      server->Shutdown();
      return 1;
    }
  }

  std::unique_ptr<Engine> engine;
  ClipServing clip;
  std::unique_ptr<RequestBuilder> request_builder;
  std::unique_ptr<ChatTemplate> chat_template;
  try {
    EngineConfig ec;
    ec.model_dir = args.model_dir;
    ec.dtype = args.dtype;
    ec.weights = args.weights;
    ec.device = args.device;
    ec.threads = args.threads;
    ec.context_length = args.context_length;
    ec.block_size = args.block_size;
    ec.kv_cache_bytes = args.kv_cache_mb << 20;
    ec.image_cache_bytes = args.image_cache_mb << 20;
    ec.token_budget = args.token_budget;
    ec.image_budget = args.image_budget;
    ec.prefix_caching = args.prefix_caching;
    ec.limits = args.limits;
    int last_pct = -1;
    ec.progress = [&last_pct](int64_t done, int64_t total) {
      const int pct = total > 0 ? static_cast<int>(100 * done / total) : 100;
      if (pct / 10 != last_pct / 10 || pct == 100) {
        if (pct != last_pct) spdlog::info("loading weights: {}%", pct);
        last_pct = pct;
      }
    };
    if (args.load_delay_ms > 0) {
      spdlog::info("waiting {} ms before loading (--load-delay-ms)", args.load_delay_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(args.load_delay_ms));
    }
    if (clip_only) {
      clip = load_clip(args.model_dir, args);
    } else {
      spdlog::info("loading model {}", args.model_dir);
      engine = Engine::start(ec);
      if (!args.clip_model_dir.empty()) clip = load_clip(args.clip_model_dir, args);
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    health->Shutdown();
    server->Shutdown();
    return 1;
  }
  try {
    if (engine) {  // the IDEFICS model's prompt and chat templates (a CLIP has none)
      const ModelDescription& d = engine->description();
      const std::string tpl = templates_path(args, args.model_dir, d.family);
      request_builder = std::make_unique<RequestBuilder>(
          engine->tokenizer(), engine->image_config(), args.limits, d.context_length, d.vocab_size,
          PromptTemplates::load_file(tpl));
      spdlog::info("prompt templates: {}", tpl);
      if (http) {
        const std::string chat = chat_template_path(args, args.model_dir, d.family);
        chat_template = std::make_unique<ChatTemplate>(ChatTemplate::load_file(chat));
        spdlog::info("chat template: {}", chat);
      }
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    health->Shutdown();
    server->Shutdown();
    return 1;
  }
  metrics.set_collector([&engine](ServerMetrics& m) {
    if (!engine) return;
    const EngineStats s = engine->stats();
    m.set_queue_length(s.queued);
    m.set_running_requests(s.running);
    m.set_kv_blocks_used(s.kv_blocks_used);
    m.set_kv_blocks_free(s.kv_blocks_free);
    m.set_image_cache_bytes(static_cast<double>(s.image_cache_bytes));
    m.set_image_cache_referenced_bytes(static_cast<double>(s.image_cache_referenced_bytes));
  });
  {
    std::lock_guard lock(stop_mu);
    serving = true;
  }
  if (clip.engine) service.attach_clip(clip.engine.get(), clip.builder.get());
  if (clip_only) service.serve_clip_only(args.model_dir);
  if (engine) service.attach(engine.get(), request_builder.get());
  if (http && clip.engine) http->attach_clip(clip.engine.get(), clip.builder.get(), clip_only);
  if (http && engine) http->attach(engine.get(), request_builder.get(), chat_template.get());
  health->SetServingStatus("", true);
  health->SetServingStatus(kServiceName, true);
  if (clip_only) {
    spdlog::info("ready: CLIP {}: serving on {}:{}", args.model_dir, args.host, bound_port);
  } else {
    const ModelDescription& d = engine->description();
    spdlog::info(
        "ready: model {} ({}, {} layers, hidden {}, {} cross layers, dtype {}, weights {}, "
        "kernels {}, context {}), {} KV blocks x {}: serving on {}:{}",
        d.model_dir, d.family, d.num_layers, d.hidden_size, d.num_cross_layers, d.dtype, d.weights,
        d.kernel_isa, d.context_length, d.kv_blocks_total, d.kv_block_size, args.host, bound_port);
  }

  {
    std::unique_lock lock(stop_mu);
    stop_cv.wait(lock, [&] { return stop_requested.load(); });
  }
  health->Shutdown();  // NOT_SERVING for every service from now on
  service.begin_shutdown();
  if (http) http->begin_shutdown();
  const bool drained = !engine || engine->drain(args.drain_timeout_s);
  if (!drained) {
    spdlog::warn("drain timeout ({} s) passed: unfinished requests answered UNAVAILABLE",
                 args.drain_timeout_s);
  }
  // Every accepted call has finished (or was ended) by now; the deadline only bounds how long
  // gRPC waits for connected clients to go away.
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(drained ? 200 : 1000));
  server->Wait();
  if (http) http->stop();
  if (metrics_http) metrics_http->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace flamingo

int main(int argc, char** argv) {
  try {
    return flamingo::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flamingo-server: %s\n", e.what());
    return 1;
  }
}
