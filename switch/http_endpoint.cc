#include "switch/http_endpoint.h"

#include <exception>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/assert.h"
#include "base/thread_name.h"

namespace authswitch::switching {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);

}  // namespace

// The io_context, the listener and the callbacks; lives as long as the endpoint. Everything but
// construction and stop() runs on the endpoint's thread.
class HttpEndpoint::Impl {
 public:
  Impl(Options options, std::function<std::string()> metrics, std::function<bool()> healthy)
      : options_(std::move(options)),
        metrics_(std::move(metrics)),
        healthy_(std::move(healthy)),
        io_(std::make_unique<Io>()) {}

  void set_reload(std::function<void()> reload) { reload_ = std::move(reload); }

  // Startup: throws std::runtime_error naming the address.
  std::uint16_t bind() {
    const std::string where = options_.listen.text();
    boost::system::error_code ec;
    tcp::resolver resolver(io_->ioc);
    const auto results =
        resolver.resolve(options_.listen.host, std::to_string(options_.listen.port),
                         tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      throw std::runtime_error("http: cannot resolve " + where + ": " + ec.message());
    }
    const tcp::endpoint endpoint = results.begin()->endpoint();
    tcp::acceptor& acceptor = io_->acceptor;
    if (acceptor.open(endpoint.protocol(), ec) ||
        acceptor.set_option(asio::socket_base::reuse_address(true), ec) ||
        acceptor.bind(endpoint, ec) ||
        acceptor.listen(asio::socket_base::max_listen_connections, ec)) {
      throw std::runtime_error("http: cannot listen on " + where + ": " + ec.message());
    }
    const auto bound = acceptor.local_endpoint(ec);
    if (ec) {
      throw std::runtime_error("http: no local address for " + where + ": " + ec.message());
    }
    return bound.port();
  }

  void start() {
    AS_ASSERT(!started_);
    AS_ASSERT(io_ != nullptr);
    started_ = true;
    accept();
    thread_ = std::thread([this] {
      base::set_thread_name("as-http");
      io_->ioc.run();
    });
  }

  void stop() noexcept {
    // run() returns without running the pending handlers; destroying the io_context then
    // destroys them, and with them the connections they keep alive (their sockets close).
    if (io_ == nullptr) {
      return;
    }
    io_->ioc.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
    io_.reset();
  }

  [[nodiscard]] const Options& options() const noexcept { return options_; }
  void on_connection_closed() noexcept {
    AS_ASSERT(connections_ > 0);
    --connections_;
  }

  // Status and body of a request for `target` (path and query) with method `verb`.
  void answer(http::verb verb, std::string_view target, http::response<http::string_body>& res);

 private:
  void accept();
  void on_accept(const boost::system::error_code& ec, tcp::socket socket);

  // The io_context and its I/O objects, released together by stop() (the acceptor and timer are
  // declared after the io_context, so they are destroyed first).
  struct Io {
    asio::io_context ioc;
    tcp::acceptor acceptor{ioc};
    asio::steady_timer retry{ioc};  // after an accept error (e.g. EMFILE): no busy loop
  };

  Options options_;
  std::function<std::string()> metrics_;
  std::function<bool()> healthy_;
  std::function<void()> reload_;  // set before start(); then read on the endpoint's thread
  std::size_t connections_ = 0;   // declared before io_: connections count down as they go
  std::unique_ptr<Io> io_;
  std::thread thread_;
  bool started_ = false;
};

// One connection: read one request (bounded in size and time), write one response, close.
// Kept alive by its pending operation.
class HttpEndpoint::Connection : public std::enable_shared_from_this<HttpEndpoint::Connection> {
 public:
  Connection(HttpEndpoint::Impl& impl, tcp::socket socket)
      : impl_(impl), stream_(std::move(socket)), buffer_(impl.options().request_bytes_max) {}
  ~Connection() { impl_.on_connection_closed(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&&) = delete;
  Connection& operator=(Connection&&) = delete;

  void start() {
    parser_.header_limit(static_cast<std::uint32_t>(impl_.options().request_bytes_max));
    parser_.body_limit(impl_.options().request_bytes_max);
    stream_.expires_after(impl_.options().read_timeout);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](const boost::system::error_code& ec,
                                                 std::size_t /*bytes*/) { self->on_read(ec); });
  }

 private:
  void on_read(const boost::system::error_code& ec) {
    res_.version(11);
    res_.keep_alive(false);
    if (ec == http::error::header_limit || ec == http::error::body_limit ||
        ec == http::error::buffer_overflow) {
      res_.result(http::status::payload_too_large);
      res_.set(http::field::content_type, kTextContentType);
      res_.body() = "request too large\n";
    } else if (ec) {
      // Timeout, a client that went away, or bytes that are not HTTP: nothing to answer.
      close();
      return;
    } else {
      const auto& req = parser_.get();
      impl_.answer(req.method(), std::string_view(req.target().data(), req.target().size()), res_);
    }
    res_.prepare_payload();
    stream_.expires_after(impl_.options().read_timeout);
    http::async_write(stream_, res_,
                      [self = shared_from_this()](const boost::system::error_code& /*ec*/,
                                                  std::size_t /*bytes*/) { self->close(); });
  }

  void close() noexcept {
    boost::system::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  HttpEndpoint::Impl& impl_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> res_;
};

void HttpEndpoint::Impl::accept() {
  io_->acceptor.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void HttpEndpoint::Impl::on_accept(const boost::system::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted) {
    return;
  }
  if (ec) {
    io_->retry.expires_after(kAcceptRetry);
    io_->retry.async_wait([this](const boost::system::error_code& wait_ec) {
      if (!wait_ec) {
        accept();
      }
    });
    return;
  }
  if (connections_ >= options_.connections_max) {
    boost::system::error_code ignored;
    socket.close(ignored);  // over the limit: refuse at once
  } else {
    ++connections_;
    std::make_shared<Connection>(*this, std::move(socket))->start();
  }
  accept();
}

void HttpEndpoint::Impl::answer(http::verb verb, std::string_view target,
                                http::response<http::string_body>& res) {
  const std::string_view path = target.substr(0, target.find('?'));
  const bool metrics = path == "/metrics";
  const bool health = path == "/healthz";
  res.set(http::field::content_type, kTextContentType);
  if (path == "/-/reload" && reload_) {
    if (verb != http::verb::post) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "POST");
      res.body() = "method not allowed\n";
      return;
    }
    reload_();  // asynchronous: the outcome is logged and counted
    res.result(http::status::accepted);
    res.body() = "reload requested\n";
    return;
  }
  if (!metrics && !health) {
    res.result(http::status::not_found);
    res.body() = "not found\n";
    return;
  }
  if (verb != http::verb::get) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET");
    res.body() = "method not allowed\n";
    return;
  }
  try {
    if (metrics) {
      res.body() = metrics_();
      res.set(http::field::content_type, kMetricsContentType);
      res.result(http::status::ok);
    } else if (healthy_()) {
      res.result(http::status::ok);
      res.body() = "ok\n";
    } else {
      res.result(http::status::service_unavailable);
      res.body() = "unavailable\n";
    }
  } catch (const std::exception&) {
    res.result(http::status::internal_server_error);
    res.set(http::field::content_type, kTextContentType);
    res.body() = "internal error\n";
  }
}

void HttpEndpoint::on_reload(std::function<void()> reload) { impl_->set_reload(std::move(reload)); }

HttpEndpoint::HttpEndpoint(Options options, std::function<std::string()> metrics,
                           std::function<bool()> healthy) {
  if (!metrics || !healthy) {
    throw std::invalid_argument("http: the metrics and healthy callbacks are required");
  }
  if (options.request_bytes_max == 0 || options.connections_max == 0 ||
      options.read_timeout <= std::chrono::milliseconds::zero() ||
      options.request_bytes_max > 1'048'576) {
    throw std::invalid_argument("http: limits must be positive (request_bytes_max <= 1 MiB)");
  }
  impl_ = std::make_unique<Impl>(std::move(options), std::move(metrics), std::move(healthy));
  port_ = impl_->bind();
}

HttpEndpoint::~HttpEndpoint() { stop(); }

void HttpEndpoint::start() {
  AS_ASSERT(impl_ != nullptr);
  impl_->start();
}

void HttpEndpoint::stop() noexcept {
  if (impl_ != nullptr) {
    impl_->stop();
  }
}

}  // namespace authswitch::switching
