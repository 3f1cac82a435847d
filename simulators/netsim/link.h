#pragma once
// Link: one connection between netsim (the card network's side) and the switch, over TCP or
// TLS (Boost.Asio, OpenSSL), framed as configured (iso8583/framing.h). A Link does the
// network management of its connection itself: it signs on first (0800, DE 70 = 001) unless
// told not to, answers the switch's 0800 (echo 301, sign-on, ...) with 0810 00, and sends its
// own echo (0800, DE 70 = 301) when it has sent nothing for echo_interval. Every other message
// goes to its Handler.
//
// LinkSet opens `connections` links, either by connecting to the switch (--target) or by
// listening for a switch that dials out (--listen), and reports when every one is ready.
//
// Memory: a Link allocates its receive buffer and two write buffers (one being written, one
// filling) in its constructor; send() copies a frame into the filling buffer and fails when it
// has no room (backpressure for the caller), so nothing grows.
// Thread-safety: everything runs on the thread running the io_context.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include "iso8583/action_codes.h"
#include "iso8583/framing.h"
#include "iso8583/message.h"
#include "iso8583/spec.h"

namespace authswitch::netsim {

struct TlsOptions {
  std::string ca;           // PEM bundle to verify the peer with; empty: no TLS
  std::string cert, key;    // our certificate (mutual TLS, or as the server when listening)
  std::string server_name;  // SNI and the name checked; default: the target's host
  [[nodiscard]] bool enabled() const noexcept { return !ca.empty() || !cert.empty(); }
};

struct LinkOptions {
  const iso8583::Dialect* dialect = nullptr;
  iso8583::Framing framing;
  bool sign_on = true;
  std::chrono::milliseconds echo_interval{30'000};  // 0: never echo
  std::size_t write_buffer_bytes = std::size_t{1} << 18U;
  // DE 32 of the network management messages (0800) netsim sends.
  std::string acquirer_id = "00012345678";
};

class Link {
 public:
  class Handler {
   public:
    Handler() = default;
    virtual ~Handler() = default;
    Handler(const Handler&) = delete;
    Handler& operator=(const Handler&) = delete;
    Handler(Handler&&) = delete;
    Handler& operator=(Handler&&) = delete;
    // Signed on (or connected, without sign-on): the link takes traffic.
    virtual void on_ready(Link& link) = 0;
    // A message that is not network management (decoded into `msg`, valid during the call).
    virtual void on_message(Link& link, const iso8583::MessageView& msg) = 0;
    // A frame or message that could not be read (the link stays open unless framing broke).
    virtual void on_bad_message(Link& link, std::string_view why) = 0;
    // The link is closed (by the peer, an error, or close()).
    virtual void on_closed(Link& link, std::string_view why) = 0;
  };

  struct Stats {
    std::uint64_t frames_in = 0, frames_out = 0;
    std::uint64_t echoes_sent = 0, echoes_answered = 0;  // ours
    std::uint64_t network_answered = 0;                  // the switch's 0800s we answered
  };

  Link(boost::asio::io_context& io, boost::asio::ssl::context* tls, const LinkOptions& options,
       Handler& handler, std::uint32_t index);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;
  Link(Link&&) = delete;
  Link& operator=(Link&&) = delete;

  // Connects (then TLS handshake, then sign-on). `server_name` is for TLS.
  void connect(const boost::asio::ip::tcp::endpoint& to, const std::string& server_name);
  // Takes a connection accepted from a dialling switch (then TLS handshake as the server).
  void accepted(boost::asio::ip::tcp::socket socket);

  // Frames `message` into the write buffer; false when the link is not open or the buffer
  // has no room (try again after some is written).
  [[nodiscard]] bool send(std::span<const std::byte> message);
  void close(std::string_view why);

  [[nodiscard]] bool ready() const noexcept { return state_ == State::kReady; }
  [[nodiscard]] bool open() const noexcept {
    return state_ == State::kReady || state_ == State::kSigningOn;
  }
  [[nodiscard]] bool closed() const noexcept { return state_ == State::kClosed; }
  // Why the link closed (empty while it has not).
  [[nodiscard]] const std::string& close_reason() const noexcept { return close_reason_; }
  [[nodiscard]] std::uint32_t index() const noexcept { return index_; }
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }
  // Bytes waiting to be written.
  [[nodiscard]] std::size_t queued_bytes() const noexcept { return pending_size_ + writing_size_; }

 private:
  enum class State : std::uint8_t { kIdle, kConnecting, kSigningOn, kReady, kClosed };

  void on_connected();
  void start_session();
  void start_read();
  void on_read(const boost::system::error_code& ec, std::size_t n);
  void handle_frame(std::span<const std::byte> message);
  void handle_network(const iso8583::MessageView& msg);
  void send_network(std::string_view de70);
  void start_write();
  void on_write(const boost::system::error_code& ec);
  void arm_echo();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_;
  boost::asio::ssl::context* tls_context_;
  LinkOptions options_;
  Handler& handler_;
  std::uint32_t index_;
  State state_ = State::kIdle;
  bool tls_client_ = true;
  iso8583::FrameDecoder decoder_;
  std::vector<std::byte> in_;
  std::size_t in_size_ = 0;
  std::vector<std::byte> pending_, writing_;
  std::size_t pending_size_ = 0, writing_size_ = 0;
  bool write_in_flight_ = false;
  iso8583::MessageView view_;
  iso8583::MessageBuilder builder_;
  std::vector<std::byte> scratch_;
  boost::asio::steady_timer echo_timer_;
  std::chrono::steady_clock::time_point last_send_{};
  std::uint32_t stan_ = 900'000;
  std::array<char, 12> de7_{};
  std::array<char, 8> de11_{};
  std::array<char, 8> de70_{};
  std::string close_reason_;
  std::shared_ptr<bool> alive_;  // handlers check it: the Link may be destroyed first
  Stats stats_;
};

struct LinkSetOptions {
  std::string target;  // HOST:PORT to connect to, or
  std::string listen;  // HOST:PORT to accept the switch's connections on
  std::uint32_t connections = 1;
  TlsOptions tls;
  LinkOptions link;
};

// Opens and owns the links of one run.
class LinkSet {
 public:
  // Throws std::runtime_error on a bad address or TLS file (start-up only).
  LinkSet(boost::asio::io_context& io, LinkSetOptions options, Link::Handler& handler);
  ~LinkSet();
  LinkSet(const LinkSet&) = delete;
  LinkSet& operator=(const LinkSet&) = delete;
  LinkSet(LinkSet&&) = delete;
  LinkSet& operator=(LinkSet&&) = delete;

  // Starts connecting (or listening); the handler hears on_ready per link.
  void start();
  // Runs `io` until every link is ready, or one failed, or `timeout` passed. Returns an empty
  // string on success, else why not.
  [[nodiscard]] std::string wait_ready(std::chrono::milliseconds timeout);
  void close_all();

  [[nodiscard]] std::span<const std::unique_ptr<Link>> links() const noexcept { return links_; }
  [[nodiscard]] Link& link(std::size_t i) noexcept { return *links_[i]; }
  [[nodiscard]] std::size_t size() const noexcept { return links_.size(); }
  // The listening port (after start() with a listen address).
  [[nodiscard]] std::uint16_t listening_port() const;

 private:
  void accept_next();

  boost::asio::io_context& io_;
  LinkSetOptions options_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::vector<std::unique_ptr<Link>> links_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::size_t accepted_ = 0;
};

// "HOST:PORT" ("[::1]:PORT" for IPv6) to an endpoint; throws std::runtime_error.
[[nodiscard]] boost::asio::ip::tcp::endpoint resolve_endpoint(boost::asio::io_context& io,
                                                              const std::string& address);
[[nodiscard]] std::string host_of(const std::string& address);

// Whether the dialect is ISO 8583:1993 (MTIs 1xxx, a 3-digit action code in DE 39).
[[nodiscard]] bool is_iso93(const iso8583::Dialect& d) noexcept;
// The network management request MTI of a dialect: 0800, or 1804 in ISO 8583:1993.
[[nodiscard]] std::uint16_t network_mti(const iso8583::Dialect& d) noexcept;

// DE 39 of a message of `mti` as the ISO 8583:1987 response code the traffic model and the
// scenarios reason in: itself in a 1987 dialect; in a 1993 one the 1987 code of that action code
// (iso8583/action_codes.h: 116 -> 51, 400 in a 1430 -> 00), or empty when it is not the action
// code of any (a 1987 code zero-padded to three digits, "051", is one of those).
[[nodiscard]] inline std::string_view response_code_of(const iso8583::Dialect& d,
                                                       std::string_view de39,
                                                       std::uint16_t mti) noexcept {
  return iso8583::uses_action_codes(d) ? iso8583::response_code_of_action(de39, mti) : de39;
}

// DE 7 (transmission date and time, MMDDhhmmss, UTC) of wall time `unix_ms` into `out`.
std::string_view format_de7(std::int64_t unix_ms, std::span<char, 10> out) noexcept;

}  // namespace authswitch::netsim
