#include "simulators/netsim/link.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>

#include "base/assert.h"

namespace authswitch::netsim {

namespace asio = boost::asio;
using Tcp = asio::ip::tcp;

namespace {

// Hinnant's civil_from_days: a day count since 1970-01-01 to month and day.
void month_day(std::int64_t days, unsigned& month, unsigned& day) noexcept {
  days += 719'468;
  const std::int64_t era = (days >= 0 ? days : days - 146'096) / 146'097;
  const auto doe = static_cast<std::uint64_t>(days - era * 146'097);
  const std::uint64_t yoe = (doe - doe / 1460 + doe / 36'524 - doe / 146'096) / 365;
  const std::uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::uint64_t mp = (5 * doy + 2) / 153;
  day = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
  month = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
}

void two_digits(unsigned v, char* out) noexcept {
  out[0] = static_cast<char>('0' + (v / 10) % 10);
  out[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

bool is_iso93(const iso8583::Dialect& d) noexcept {
  // ISO 8583:1993 carries a 3-digit action code in DE 39 where 1987 has a 2-character
  // response code.
  return iso8583::uses_action_codes(d);
}

std::uint16_t network_mti(const iso8583::Dialect& d) noexcept {
  return is_iso93(d) ? std::uint16_t{1804} : std::uint16_t{800};
}

std::string_view format_de7(std::int64_t unix_ms, std::span<char, 10> out) noexcept {
  const std::int64_t secs = unix_ms / 1000;
  const std::int64_t days = secs / 86'400;
  const auto in_day = static_cast<unsigned>(secs % 86'400);
  unsigned month = 0;
  unsigned day = 0;
  month_day(days, month, day);
  two_digits(month, out.data());
  two_digits(day, out.data() + 2);
  two_digits(in_day / 3600, out.data() + 4);
  two_digits((in_day / 60) % 60, out.data() + 6);
  two_digits(in_day % 60, out.data() + 8);
  return {out.data(), out.size()};
}

std::string host_of(const std::string& address) {
  const std::size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

Tcp::endpoint resolve_endpoint(asio::io_context& io, const std::string& address) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) {
    throw std::runtime_error("address '" + address + "': expected HOST:PORT");
  }
  const std::string host = host_of(address);
  const std::string port = address.substr(colon + 1);
  boost::system::error_code ec;
  Tcp::resolver resolver(io);
  const auto results = resolver.resolve(host, port, ec);
  if (ec || results.empty()) {
    throw std::runtime_error("address '" + address +
                             "': " + (ec ? ec.message() : std::string("no such host")));
  }
  return results.begin()->endpoint();
}

// ---------------------------------------------------------------------------------------------
// Link

Link::Link(asio::io_context& io, asio::ssl::context* tls, const LinkOptions& options,
           Handler& handler, std::uint32_t index)
    : io_(io),
      socket_(io),
      tls_context_(tls),
      options_(options),
      handler_(handler),
      index_(index),
      decoder_(options.framing, options.dialect),
      in_(2 * iso8583::max_buffered_bytes(options.framing)),
      pending_(options.write_buffer_bytes),
      writing_(options.write_buffer_bytes),
      builder_(*options.dialect),
      scratch_(iso8583::max_buffered_bytes(options.framing)),
      echo_timer_(io),
      alive_(std::make_shared<bool>(true)) {
  AS_ASSERT(options.dialect != nullptr);
  AS_ASSERT(options.write_buffer_bytes >= iso8583::max_buffered_bytes(options.framing));
}

Link::~Link() {
  *alive_ = false;
  boost::system::error_code ignored;
  try {
    echo_timer_.cancel();
  } catch (const boost::system::system_error&) {  // nothing to cancel then
  }
  if (tls_) {
    tls_->next_layer().close(ignored);
  } else {
    socket_.close(ignored);
  }
}

void Link::connect(const Tcp::endpoint& to, const std::string& server_name) {
  state_ = State::kConnecting;
  tls_client_ = true;
  if (tls_context_ != nullptr) {
    tls_ = std::make_unique<asio::ssl::stream<Tcp::socket>>(io_, *tls_context_);
    if (!server_name.empty()) {
      // SNI, and the name the certificate must carry.
      // SSL_set_tlsext_host_name is a macro with a C cast: its expansion, spelt out.
      SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(server_name.c_str()));
      tls_->set_verify_callback(asio::ssl::host_name_verification(server_name));
    }
  }
  Tcp::socket& s = tls_ ? tls_->next_layer() : socket_;
  s.async_connect(to, [this, alive = alive_](const boost::system::error_code& ec) {
    if (!*alive) {
      return;
    }
    if (ec) {
      close("connect: " + ec.message());
      return;
    }
    on_connected();
  });
}

void Link::accepted(Tcp::socket socket) {
  state_ = State::kConnecting;
  tls_client_ = false;
  if (tls_context_ != nullptr) {
    tls_ = std::make_unique<asio::ssl::stream<Tcp::socket>>(std::move(socket), *tls_context_);
  } else {
    socket_ = std::move(socket);
  }
  on_connected();
}

void Link::on_connected() {
  Tcp::socket& s = tls_ ? tls_->next_layer() : socket_;
  boost::system::error_code ignored;
  s.set_option(Tcp::no_delay(true), ignored);
  if (!tls_) {
    start_session();
    return;
  }
  // As the side that connected we are the TLS client; an accepted link is the server.
  tls_->async_handshake(
      tls_client_ ? asio::ssl::stream_base::client : asio::ssl::stream_base::server,
      [this, alive = alive_](const boost::system::error_code& ec) {
        if (!*alive) {
          return;
        }
        if (ec) {
          close("TLS handshake: " + ec.message());
          return;
        }
        start_session();
      });
}

void Link::start_session() {
  start_read();
  arm_echo();
  if (options_.sign_on) {
    state_ = State::kSigningOn;
    send_network("001");
    return;
  }
  state_ = State::kReady;
  handler_.on_ready(*this);
}

void Link::start_read() {
  auto buffer = asio::buffer(in_.data() + in_size_, in_.size() - in_size_);
  auto done = [this, alive = alive_](const boost::system::error_code& ec, std::size_t n) {
    if (*alive) {
      on_read(ec, n);
    }
  };
  if (tls_) {
    tls_->async_read_some(buffer, std::move(done));
  } else {
    socket_.async_read_some(buffer, std::move(done));
  }
}

void Link::on_read(const boost::system::error_code& ec, std::size_t n) {
  if (ec) {
    close(ec == asio::error::eof ? std::string("closed by the switch") : "read: " + ec.message());
    return;
  }
  in_size_ += n;
  std::size_t at = 0;
  while (state_ != State::kClosed) {
    const iso8583::FrameResult r = decoder_.decode({in_.data() + at, in_size_ - at});
    if (r.status == iso8583::FrameStatus::kNeedMore) {
      break;
    }
    if (r.status == iso8583::FrameStatus::kMalformed) {
      std::array<char, 160> why{};
      close("framing: " + std::string(iso8583::describe(r.error, why)));
      return;
    }
    at += r.consumed;
    if (r.status == iso8583::FrameStatus::kComplete) {
      ++stats_.frames_in;
      handle_frame(r.message);
    }
  }
  if (state_ == State::kClosed) {
    return;
  }
  if (at > 0) {
    std::memmove(in_.data(), in_.data() + at, in_size_ - at);
    in_size_ -= at;
  }
  start_read();
}

void Link::handle_frame(std::span<const std::byte> message) {
  const auto decoded = iso8583::decode(*options_.dialect, message, view_);
  if (!decoded) {
    std::array<char, 160> why{};
    handler_.on_bad_message(*this, iso8583::describe(decoded.error(), why));
    return;
  }
  const std::uint16_t mti = view_.mti();
  const auto cls = static_cast<std::uint16_t>(mti % 1000 / 100);
  if (cls == 8) {
    handle_network(view_);
    return;
  }
  handler_.on_message(*this, view_);
}

// 08xx: the switch's requests are answered at once; answers to ours end the sign-on or count
// as an echo.
void Link::handle_network(const iso8583::MessageView& msg) {
  // The function: DE 70 in ISO 8583:1987, DE 24 (function code, read as its DE 70
  // equivalent: 801 -> 001) in 1993.
  const bool iso93 = is_iso93(*options_.dialect);
  const int function_de = iso93 ? 24 : 70;
  std::array<char, 8> buf{};
  std::string_view de70 =
      msg.has(function_de) ? iso8583::text_value(msg.field(function_de), buf) : "";
  if (iso93) {
    de70 = iso8583::network_code_of_function(de70);
  }
  if (iso8583::response_mti(msg.mti()) != 0) {
    // Accepted: 00, or 800 in a 1814.
    const std::uint16_t mti = msg.mti();
    if (!iso8583::build_response(msg, iso93 ? iso8583::accepted_action_code(mti) : "00", {},
                                 builder_)) {
      handler_.on_bad_message(*this, "0800 from the switch cannot be answered");
      return;
    }
    if (msg.has(function_de)) {
      builder_.copy_from(msg, function_de);
    }
    const auto n = builder_.encode(scratch_);
    if (n && send({scratch_.data(), *n})) {
      ++stats_.network_answered;
    }
    return;
  }
  std::array<char, 8> code_buf{};
  const std::string_view de39 = msg.has(39) ? iso8583::text_value(msg.field(39), code_buf) : "";
  const std::string_view code = response_code_of(*options_.dialect, de39, msg.mti());
  if (state_ == State::kSigningOn && de70 == "001") {
    if (code != "00") {
      close("sign-on refused with " + std::string(de39.empty() ? "no code" : de39));
      return;
    }
    state_ = State::kReady;
    handler_.on_ready(*this);
    return;
  }
  std::array<char, 16> stan_buf{};
  const std::string_view stan = msg.has(11) ? iso8583::text_value(msg.field(11), stan_buf) : "";
  if (stan.size() == 6 && stan[0] == '9') {
    ++stats_.echoes_answered;  // ours: netsim's own STANs are 900000..999999
    return;
  }
  handler_.on_message(*this, msg);  // an answer to a 0800 the caller sent (scenarios)
}

void Link::send_network(std::string_view de70) {
  builder_.reset(network_mti(*options_.dialect));
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  builder_.set_text(7, format_de7(now_ms, std::span<char, 10>(de7_.data(), 10)));
  stan_ = stan_ >= 999'999 ? 900'000 : stan_ + 1;
  for (std::size_t i = 6, v = stan_; i > 0; --i, v /= 10) {
    de11_[i - 1] = static_cast<char>('0' + v % 10);
  }
  builder_.set_text(11, {de11_.data(), 6});
  if (options_.dialect->field(32).defined && !options_.acquirer_id.empty()) {
    builder_.set_text(32, options_.acquirer_id);
  }
  if (is_iso93(*options_.dialect)) {
    // ISO 8583:1993: the DE 24 function code (801 sign-on, 831 echo test); DE 70 is a country
    // code there.
    builder_.set_text(24, iso8583::function_code_of(de70));
  } else {
    std::copy(de70.begin(), de70.end(), de70_.begin());
    builder_.set_text(70, {de70_.data(), de70.size()});
  }
  const auto n = builder_.encode(scratch_);
  AS_ASSERT(n.has_value());  // fixed, valid values
  if (send({scratch_.data(), *n}) && de70 == "301") {
    ++stats_.echoes_sent;
  }
}

bool Link::send(std::span<const std::byte> message) {
  if (!open()) {
    return false;
  }
  const iso8583::Framing& f = options_.framing;
  const std::size_t prefix = iso8583::length_header_bytes(f.length);
  const std::size_t total = prefix + f.header_bytes + message.size();
  if (total > pending_.size() - pending_size_) {
    return false;
  }
  std::byte* out = pending_.data() + pending_size_;
  const auto written = iso8583::write_frame_header(f, f.header_bytes + message.size(),
                                                   {out, pending_.size() - pending_size_});
  if (!written) {
    return false;  // larger than the framing allows
  }
  std::fill_n(out + prefix, f.header_bytes, std::byte{0});
  std::memcpy(out + prefix + f.header_bytes, message.data(), message.size());
  pending_size_ += total;
  ++stats_.frames_out;
  last_send_ = std::chrono::steady_clock::now();
  if (!write_in_flight_) {
    start_write();
  }
  return true;
}

void Link::start_write() {
  AS_ASSERT(!write_in_flight_);
  if (pending_size_ == 0) {
    return;
  }
  std::swap(pending_, writing_);
  writing_size_ = pending_size_;
  pending_size_ = 0;
  write_in_flight_ = true;
  auto done = [this, alive = alive_](const boost::system::error_code& ec, std::size_t) {
    if (*alive) {
      on_write(ec);
    }
  };
  auto buffer = asio::buffer(writing_.data(), writing_size_);
  if (tls_) {
    asio::async_write(*tls_, buffer, std::move(done));
  } else {
    asio::async_write(socket_, buffer, std::move(done));
  }
}

void Link::on_write(const boost::system::error_code& ec) {
  write_in_flight_ = false;
  writing_size_ = 0;
  if (ec) {
    close("write: " + ec.message());
    return;
  }
  start_write();
}

void Link::arm_echo() {
  if (options_.echo_interval.count() <= 0) {
    return;
  }
  echo_timer_.expires_after(options_.echo_interval);
  echo_timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
    if (ec || !*alive || !open()) {
      return;
    }
    if (std::chrono::steady_clock::now() - last_send_ >= options_.echo_interval) {
      send_network("301");
    }
    arm_echo();
  });
}

void Link::close(std::string_view why) {
  if (state_ == State::kClosed) {
    return;
  }
  state_ = State::kClosed;
  close_reason_ = std::string(why);
  boost::system::error_code ignored;
  echo_timer_.cancel();
  if (tls_) {
    tls_->next_layer().shutdown(Tcp::socket::shutdown_both, ignored);
    tls_->next_layer().close(ignored);
  } else {
    socket_.shutdown(Tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }
  handler_.on_closed(*this, why);
}

// ---------------------------------------------------------------------------------------------
// LinkSet

LinkSet::LinkSet(asio::io_context& io, LinkSetOptions options, Link::Handler& handler)
    : io_(io), options_(std::move(options)) {
  if (options_.target.empty() == options_.listen.empty()) {
    throw std::runtime_error("give either a target to connect to or a listen address");
  }
  if (options_.connections == 0 || options_.connections > 4096) {
    throw std::runtime_error("connections must be 1..4096");
  }
  const TlsOptions& t = options_.tls;
  if (t.enabled()) {
    const bool server = !options_.listen.empty();
    tls_ = std::make_unique<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                       : asio::ssl::context::tls_client);
    tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    if (!t.ca.empty()) {
      tls_->load_verify_file(t.ca, ec);
      if (ec) {
        throw std::runtime_error("--tls-ca " + t.ca + ": " + ec.message());
      }
      tls_->set_verify_mode(server ? asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert
                                   : asio::ssl::verify_peer);
    }
    if (!t.cert.empty()) {
      tls_->use_certificate_chain_file(t.cert, ec);
      if (ec) {
        throw std::runtime_error("--tls-cert " + t.cert + ": " + ec.message());
      }
      tls_->use_private_key_file(t.key, asio::ssl::context::pem, ec);
      if (ec) {
        throw std::runtime_error("--tls-key " + t.key + ": " + ec.message());
      }
    } else if (server) {
      throw std::runtime_error("TLS on a listen address needs --tls-cert and --tls-key");
    }
  }
  for (std::uint32_t i = 0; i < options_.connections; ++i) {
    links_.push_back(std::make_unique<Link>(io_, tls_.get(), options_.link, handler, i));
  }
}

LinkSet::~LinkSet() = default;

void LinkSet::start() {
  if (!options_.target.empty()) {
    const Tcp::endpoint to = resolve_endpoint(io_, options_.target);
    const std::string name =
        options_.tls.server_name.empty() ? host_of(options_.target) : options_.tls.server_name;
    for (auto& l : links_) {
      l->connect(to, tls_ ? name : std::string());
    }
    return;
  }
  const Tcp::endpoint at = resolve_endpoint(io_, options_.listen);
  acceptor_ = std::make_unique<Tcp::acceptor>(io_);
  acceptor_->open(at.protocol());
  acceptor_->set_option(Tcp::acceptor::reuse_address(true));
  acceptor_->bind(at);
  acceptor_->listen();
  accept_next();
}

void LinkSet::accept_next() {
  if (accepted_ >= links_.size()) {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
    return;
  }
  acceptor_->async_accept([this](const boost::system::error_code& ec, Tcp::socket s) {
    if (ec) {
      return;  // closed
    }
    links_[accepted_++]->accepted(std::move(s));
    accept_next();
  });
}

std::uint16_t LinkSet::listening_port() const {
  if (!acceptor_ || !acceptor_->is_open()) {
    return 0;
  }
  boost::system::error_code ec;
  const auto ep = acceptor_->local_endpoint(ec);
  return ec ? std::uint16_t{0} : ep.port();
}

std::string LinkSet::wait_ready(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::size_t ready = 0;
    for (const auto& l : links_) {
      if (l->ready()) {
        ++ready;
      }
    }
    if (ready == links_.size()) {
      return {};
    }
    for (const auto& l : links_) {
      if (l->closed()) {
        return "connection " + std::to_string(l->index()) + ": " + l->close_reason();
      }
    }
    if (std::chrono::steady_clock::now() >= until) {
      return std::to_string(ready) + " of " + std::to_string(links_.size()) +
             " connections ready after " + std::to_string(timeout.count()) + " ms";
    }
    io_.run_one_for(std::chrono::milliseconds(20));
  }
}

void LinkSet::close_all() {
  if (acceptor_) {
    boost::system::error_code ignored;
    acceptor_->close(ignored);
  }
  for (auto& l : links_) {
    l->close("closed by netsim");
  }
}

}  // namespace authswitch::netsim
