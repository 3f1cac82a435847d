#include "switch/processor.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <optional>
#include <stdexcept>

#include "base/assert.h"
#include "base/civil_date.h"
#include "base/hash.h"
#include "iso8583/action_codes.h"
#include "iso8583/composite.h"
#include "limits/layout.h"
#include "risk/authorization.h"
#include "switch/format_internal.h"

namespace authswitch::switching {

namespace {

risk::CardStatus card_status_of(limits::CardState state) noexcept {
  switch (state) {
    case limits::CardState::kActive:
      return risk::CardStatus::kActive;
    case limits::CardState::kBlocked:
      return risk::CardStatus::kBlocked;
    case limits::CardState::kLost:
      return risk::CardStatus::kLost;
    case limits::CardState::kStolen:
      return risk::CardStatus::kStolen;
    case limits::CardState::kClosed:
      return risk::CardStatus::kClosed;
    case limits::CardState::kInactive:
      return risk::CardStatus::kInactive;
    case limits::CardState::kUnknown:
      break;
  }
  return risk::CardStatus::kUnknown;
}

using iso8583::MessageView;

// What one message asks the holds script to do.
enum class Kind : std::uint8_t { kNone, kAuth, kDebit, kRefund, kBalance, kCapture, kReverse };

[[nodiscard]] bool is_advice_like(Kind k) noexcept {
  return k == Kind::kCapture || k == Kind::kReverse;
}

// A transaction key (or a hold id, a replay key) in fixed storage.
struct KeyText {
  std::array<char, limits::kTxnKeyMax> chars{};
  std::size_t size = 0;

  [[nodiscard]] std::string_view view() const noexcept { return {chars.data(), size}; }
  void clear() noexcept { size = 0; }
  // False (and unchanged) when it would not fit.
  bool append(std::string_view s) noexcept {
    if (s.size() > chars.size() - size) {
      return false;
    }
    std::copy(s.begin(), s.end(), chars.begin() + static_cast<std::ptrdiff_t>(size));
    size += s.size();
    return true;
  }
};

// `digits` without leading zeros ("0" when nothing else is left): DE 32 and DE 90's acquirer id
// name the same institution whether or not it was zero-filled.
[[nodiscard]] std::string_view strip_zeros(std::string_view digits) noexcept {
  const std::size_t first = digits.find_first_not_of('0');
  return first == std::string_view::npos ? std::string_view("0") : digits.substr(first);
}

// The issuer's calendar (UTC) for the day and month counters (base/civil_date.h).
using base::civil_from_days;
using base::CivilDate;

// Bitmap words as the dialect carries them (ISO 8583:1987 section 4.2: bit 1 of each word but
// the last announces the next bitmap).
[[nodiscard]] int hex_value(std::uint8_t c, iso8583::BitmapEncoding enc) noexcept {
  if (enc == iso8583::BitmapEncoding::kEbcdicHex) {
    if (c >= 0xF0 && c <= 0xF9) {
      return c - 0xF0;
    }
    if (c >= 0xC1 && c <= 0xC6) {
      return c - 0xC1 + 10;
    }
    if (c >= 0x81 && c <= 0x86) {
      return c - 0x81 + 10;
    }
    return -1;
  }
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

[[nodiscard]] bool read_bitmap_word(iso8583::BitmapEncoding enc, const std::byte* p,
                                    std::uint64_t& out) noexcept {
  out = 0;
  if (enc == iso8583::BitmapEncoding::kBinary) {
    for (int i = 0; i < 8; ++i) {
      out = (out << 8U) | std::to_integer<std::uint64_t>(p[i]);
    }
    return true;
  }
  for (int i = 0; i < 16; ++i) {
    const int v = hex_value(std::to_integer<std::uint8_t>(p[i]), enc);
    if (v < 0) {
      return false;
    }
    out = (out << 4U) | static_cast<std::uint64_t>(v);
  }
  return true;
}

void write_bitmap_word(iso8583::BitmapEncoding enc, std::uint64_t w, std::byte* p) noexcept {
  if (enc == iso8583::BitmapEncoding::kBinary) {
    for (int i = 7; i >= 0; --i) {
      p[i] = static_cast<std::byte>(w & 0xFFU);
      w >>= 8U;
    }
    return;
  }
  constexpr std::string_view kAscii = "0123456789ABCDEF";
  constexpr std::array<std::uint8_t, 16> kEbcdic = {0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7,
                                                    0xF8, 0xF9, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6};
  for (int i = 15; i >= 0; --i) {
    const auto nibble = static_cast<std::size_t>(w & 0xFU);
    p[i] = enc == iso8583::BitmapEncoding::kAsciiHex ? static_cast<std::byte>(kAscii[nibble])
                                                     : static_cast<std::byte>(kEbcdic[nibble]);
    w >>= 4U;
  }
}

[[nodiscard]] std::string_view code_of(const limits::Decision& d) noexcept { return d.code(); }

}  // namespace

std::string_view to_string(HandleStatus s) noexcept {
  switch (s) {
    case HandleStatus::kAccepted:
      return "accepted";
    case HandleStatus::kBusy:
      return "busy";
    case HandleStatus::kUnreadable:
      return "unreadable";
    case HandleStatus::kNotARequest:
      return "not-a-request";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// Slots.

enum class Processor::OpKind : std::uint8_t { kScript, kDue, kCompensate };

// A pipeline completion bound to one slot and one of its calls.
class Processor::Op final : public limits::Completion {
 public:
  void bind(Processor& p, Slot& s, OpKind k) noexcept {
    processor_ = &p;
    slot_ = &s;
    kind_ = k;
  }
  void on_reply(const limits::Reply& reply) noexcept override {
    processor_->on_op_reply(*slot_, kind_, reply);
  }
  void on_error(limits::ClientErrc errc, std::string_view message) noexcept override {
    // NOSCRIPT or an unknown function: the pipeline has queued the reload; one retry runs
    // after it.
    const bool noscript = limits::is_unknown_script_error(message);
    processor_->on_op_error(*slot_, kind_, noscript ? limits::ClientErrc::kServerError : errc,
                            noscript);
  }

 private:
  Processor* processor_ = nullptr;
  Slot* slot_ = nullptr;
  OpKind kind_ = OpKind::kScript;
};

class Processor::CardWait final : public limits::CardLoadCallback {
 public:
  void bind(Processor& p, Slot& s) noexcept {
    processor_ = &p;
    slot_ = &s;
  }
  void on_card_loaded(const limits::CardLoadResult& result) noexcept override {
    processor_->on_card_loaded(*slot_, result);
  }

 private:
  Processor* processor_ = nullptr;
  Slot* slot_ = nullptr;
};

struct Processor::Slot {
  // Per request; reset() by the allocator.
  std::uint64_t request_id = 0;
  Clock::time_point deadline{};
  std::int64_t now_ms = 0;
  std::size_t size = 0;  // of the request in `in`
  Kind kind = Kind::kNone;
  bool busy = false;
  bool answered = false;
  bool script_submitted = false;
  bool script_pending = false;  // the script call has not completed yet
  bool owed = false;            // answered by stand-in: its call's outcome goes to the reconciler
  bool retried = false;
  bool card_pending = false;
  std::uint8_t ops = 0;  // pipeline calls not yet completed
  std::uint8_t transaction_type = 0;
  std::int64_t amount_minor = 0;  // DE 4; for a reversal the amount left standing (DE 95)
  std::array<char, 3> currency{};
  std::array<char, 4> mcc{};
  std::size_t mcc_len = 0;
  std::array<char, 4> expiry{};  // presented: DE 14, or track 2
  std::size_t expiry_len = 0;
  std::array<char, 2> account_type{'0', '0'};  // DE 3 positions 3-4
  KeyText txn;                                 // own "<acquirer>-<DE 7>-<DE 11>"
  KeyText hold;                                // the hold the call works on
  KeyText replay;                              // the replay key of the call
  KeyText aux;                                 // the compensating reversal's replay key
  std::array<char, 16> fingerprint{};
  limits::PanToken token;
  std::array<char, limits::kAccountIdMax> account{};
  std::size_t account_len = 0;
  limits::ChannelLimits limits;
  std::array<risk::CardOverride, limits::kCardOverridesMax> overrides{};
  std::size_t override_count = 0;
  risk::Authorization auth;
  risk::RiskDecision risk;
  std::uint64_t rules_generation = 0;

  // Fixed for the slot's life.
  std::uint32_t index = 0;
  std::byte* in = nullptr;
  MessageView view;
  Op script_op;
  Op due_op;
  Op compensate_op;
  CardWait card_wait;

  [[nodiscard]] std::string_view account_id() const noexcept {
    return {account.data(), account_len};
  }
  [[nodiscard]] std::string_view fingerprint_text() const noexcept {
    return {fingerprint.data(), fingerprint.size()};
  }
  void reset() noexcept {
    size = 0;
    kind = Kind::kNone;
    busy = true;
    answered = false;
    script_submitted = false;
    script_pending = false;
    owed = false;
    retried = false;
    card_pending = false;
    ops = 0;
    transaction_type = 0;
    amount_minor = 0;
    currency = {'0', '0', '0'};
    mcc_len = 0;
    expiry_len = 0;
    account_type = {'0', '0'};
    txn.clear();
    hold.clear();
    replay.clear();
    aux.clear();
    account_len = 0;
    limits = {};
    override_count = 0;
    auth = {};
    risk = {};
    rules_generation = 0;
  }
};

// ---------------------------------------------------------------------------------------------
// Startup.

Processor::Processor(const iso8583::Dialect& dialect, limits::RedisPipeline& pipeline,
                     limits::CardDirectory& directory, risk::RuleStore::Reader& rules,
                     limits::CardDataCrypto& crypto, Options options, ResponseSink& sink)
    : dialect_(dialect),
      pipeline_(pipeline),
      directory_(directory),
      rules_(rules),
      crypto_(crypto),
      options_(std::move(options)),
      sink_(sink),
      action_codes_(iso8583::uses_action_codes(dialect)),
      key_time_de_(dialect.field(12).defined && dialect.field(12).max_units == 12 ? 12 : 7),
      builder_(dialect) {
  if (options_.in_flight_max == 0 || options_.in_flight_max > (std::size_t{1} << 20)) {
    throw std::invalid_argument("processor: in_flight_max must be 1 .. 1048576");
  }
  if (options_.max_message_bytes < 64 || options_.max_message_bytes > (std::size_t{1} << 20)) {
    throw std::invalid_argument("processor: max_message_bytes must be 64 .. 1048576");
  }
  if (options_.budget <= Clock::duration::zero() ||
      options_.housekeeping_timeout <= Clock::duration::zero()) {
    throw std::invalid_argument("processor: budget and housekeeping_timeout must be > 0");
  }
  if (options_.hold_ttl_ms <= 0 || options_.replay_window_ms <= 0) {
    throw std::invalid_argument("processor: hold_ttl_ms and replay_window_ms must be > 0");
  }
  if (options_.approval_prefix.size() > 5 ||
      !std::all_of(options_.approval_prefix.begin(), options_.approval_prefix.end(),
                   [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); })) {
    throw std::invalid_argument("processor: approval_prefix must be 0..5 of [A-Z0-9]");
  }
  if (options_.stand_in.approve_up_to_minor < 0) {
    throw std::invalid_argument("processor: stand-in approve_up_to_minor must be >= 0");
  }
  if (!dialect_.field(38).defined || !dialect_.field(39).defined) {
    throw std::invalid_argument("processor: the dialect must define DE 38 and DE 39");
  }
  const std::size_t n = options_.in_flight_max;
  slots_ = std::make_unique<Slot[]>(n);
  deadlines_ = std::make_unique<Clock::time_point[]>(n);
  std::fill_n(deadlines_.get(), n, Clock::time_point::max());
  free_ = std::make_unique<std::uint32_t[]>(n);
  waiting_ = std::make_unique<std::uint32_t[]>(n);
  in_buffers_ = std::make_unique<std::byte[]>(n * options_.max_message_bytes);
  for (std::size_t i = 0; i < n; ++i) {
    Slot& s = slots_[i];
    s.index = static_cast<std::uint32_t>(i);
    s.in = in_buffers_.get() + i * options_.max_message_bytes;
    s.script_op.bind(*this, s, OpKind::kScript);
    s.due_op.bind(*this, s, OpKind::kDue);
    s.compensate_op.bind(*this, s, OpKind::kCompensate);
    s.card_wait.bind(*this, s);
    free_[n - 1 - i] = static_cast<std::uint32_t>(i);  // slot 0 is taken first
  }
  free_count_ = n;
  // A response is the request's echoed fields plus DE 38, 39, 54 and 70, re-encoded: never more
  // than twice the request plus that margin.
  out_size_ = 2 * options_.max_message_bytes + 512;
  out_ = std::make_unique<std::byte[]>(out_size_);
  scratch_ = std::make_unique<std::byte[]>(options_.max_message_bytes);
  call_ = std::make_unique<limits::HoldsCall>();
  script_args_ = std::make_unique<risk::ScriptArgs>();
  adopt_rules(rules_.current());
}

// The network's policy in `set` and the holds library with `set`'s velocity definitions, in
// place of the previous set's: registered on the pipeline (loaded now), the previous one
// released (deleted from Redis once no processor of this shard names it). Allocates: once per
// rule set. Throws what the pipeline throws; then nothing has changed but library_ok_.
void Processor::adopt_rules(const risk::RuleSet& set) {
  library_ok_ = false;
  limits::FunctionLibrary next = limits::make_holds_library(set.velocity_definitions());
  if (next.function != library_.function) {
    (void)pipeline_.load_library(next.text, next.library, next.function);
    if (!library_.function.empty()) {
      pipeline_.release_library(library_.function);
    }
    library_ = std::move(next);
    function_ = library_.function;
  }
  network_policy_ = set.network_policy(options_.network);
  policy_generation_ = set.generation();
  library_ok_ = true;
}

// adopt_rules, on the message path or the tick: a failure (more libraries than the pipeline
// holds, or memory) leaves the set marked as tried, and auth and debit are answered by stand-in
// until the tick's next attempt (once a second), not retried per message.
void Processor::try_adopt_rules(const risk::RuleSet& set) noexcept {
  try {
    adopt_rules(set);
  } catch (const std::exception&) {
    policy_generation_ = set.generation();
    library_ok_ = false;
    ++stats_.library_failures;
    adopt_retry_at_ = now_ + std::chrono::seconds(1);
  }
}

// The pipeline may be gone already (the recommended order): only the processor's own state is
// checked, and the holds library adopt_rules registered is not released (a pipeline that
// outlives its processors keeps the entry, and Redis the library, which the next switch with
// the same rules calls again).
Processor::~Processor() { AS_ASSERT(in_use_ == 0); }

// ---------------------------------------------------------------------------------------------
// Intake.

HandleStatus Processor::handle(std::uint64_t request_id, std::span<const std::byte> message,
                               Clock::time_point arrival, std::int64_t now_ms,
                               ConnectionState* connection) noexcept {
  ConnectionState& conn = connection != nullptr ? *connection : own_connection_;
  now_ = std::max(now_, arrival);
  if (message.empty() || message.size() > options_.max_message_bytes) {
    ++stats_.unreadable;
    return HandleStatus::kUnreadable;
  }
  if (free_count_ == 0) {
    ++stats_.busy;
    return HandleStatus::kBusy;
  }
  Slot& s = slots_[free_[--free_count_]];
  ++in_use_;
  s.reset();
  std::memcpy(s.in, message.data(), message.size());
  s.size = message.size();
  s.request_id = request_id;
  s.deadline = arrival + options_.budget;
  deadlines_[s.index] = s.deadline;
  s.now_ms = now_ms;

  const auto decoded = iso8583::decode(dialect_, {s.in, s.size}, s.view);
  if (!decoded) {
    return on_undecodable(s, decoded.error());
  }
  const std::uint16_t mti = s.view.mti();
  if (iso8583::response_mti(mti) == 0) {
    ++stats_.not_requests;
    on_network_response(s, conn);
    s.answered = true;
    maybe_free(s);
    return HandleStatus::kNotARequest;
  }
  // Message class and function, without the version and origin digits (0101 -> 100).
  const int base = mti % 1000 - mti % 10;
  const bool financial =
      base == 100 || base == 200 || base == 120 || base == 220 || base == 400 || base == 420;
  if (financial && conn.sign_on_required && !conn.signed_on) {
    // Not signed on (DESIGN.md section 1): refused without touching Redis, advices and
    // reversals included (the peer repeats them once signed on).
    ++stats_.not_signed_on;
    ++conn.refused_not_signed_on;
    respond(s, "91", false);
    maybe_free(s);
    return HandleStatus::kAccepted;
  }
  switch (base) {
    case 100:
      ++stats_.authorizations;
      start_financial(s);
      break;
    case 200:
      ++stats_.financials;
      start_financial(s);
      break;
    case 120:
    case 220:
      ++stats_.advices;
      start_financial(s);
      break;
    case 400:
    case 420:
      ++stats_.reversals;
      start_financial(s);
      break;
    case 800:
    case 820:
      ++stats_.network;
      on_network(s, conn);
      break;
    default:
      ++stats_.other;
      respond(s, "12", false);
      break;
  }
  maybe_free(s);
  return HandleStatus::kAccepted;
}

// A message the codec refused. When the header, MTI and bitmaps were read and the fields before
// the bad one include the keys (DE 7, DE 11), the request is answered 30 with the fields that
// could be read echoed (never the bad one); otherwise there is nothing to answer.
HandleStatus Processor::on_undecodable(Slot& s, const iso8583::Error& e) noexcept {
  const auto unreadable = [&] {
    ++stats_.unreadable;
    s.answered = true;
    maybe_free(s);
    return HandleStatus::kUnreadable;
  };
  std::span<const std::byte> readable;
  if (e.code == iso8583::Errc::kTrailingBytes) {
    readable = {s.in, e.offset};  // every announced field was fine: drop what follows
  } else if (e.field >= 2 && e.field != 65) {
    // Cut the request to the fields before the bad one: clear their bitmap bits (the
    // indicator bits stay, so the layout is unchanged), then the decoder reports where the
    // remaining fields end.
    std::byte* const cut = scratch_.get();
    std::memcpy(cut, s.in, s.size);
    const iso8583::DialectInfo& info = dialect_.info();
    const std::size_t bitmap_bytes = dialect_.bitmap_bytes();
    std::size_t pos = info.header_bytes + dialect_.mti_bytes();
    for (unsigned w = 0; w < 3; ++w) {
      std::uint64_t word = 0;
      if (pos + bitmap_bytes > s.size || !read_bitmap_word(info.bitmap_encoding, cut + pos, word)) {
        return unreadable();
      }
      const bool more = w < 2 && (word >> 63U) != 0;
      for (unsigned j = w < 2 ? 1 : 0; j < 64; ++j) {
        if (static_cast<int>(w * 64 + j + 1) >= e.field) {
          word &= ~(std::uint64_t{1} << (63 - j));
        }
      }
      write_bitmap_word(info.bitmap_encoding, word, cut + pos);
      pos += bitmap_bytes;
      if (!more) {
        break;
      }
    }
    const auto first = iso8583::decode(dialect_, {cut, s.size}, s.view);
    if (first) {
      readable = {cut, s.size};
    } else if (first.error().code == iso8583::Errc::kTrailingBytes) {
      readable = {cut, first.error().offset};
    } else {
      return unreadable();
    }
  } else {
    return unreadable();
  }
  if (!iso8583::decode(dialect_, readable, s.view) || !s.view.has(7) || !s.view.has(11) ||
      iso8583::response_mti(s.view.mti()) == 0) {
    return unreadable();
  }
  respond(s, "30", false);
  maybe_free(s);
  return HandleStatus::kAccepted;
}

// 0800 / 0820: sign-on (DE 70 001), sign-off (002), echo (301) and the rest of the network
// management codes are acknowledged at once; an unknown code is answered 12. ISO 8583:1993
// (1804): the same by the DE 24 function code (801 sign-on, 802 sign-off, 831 echo test, 811,
// 821), answered 1814 with DE 24 echoed and action code 800 (accepted) or 902 (12); a 1804
// without DE 24 is a format error (904).
void Processor::on_network(Slot& s, ConnectionState& c) noexcept {
  const int de = action_codes_ ? 24 : 70;
  std::string_view code = "00";
  if (s.view.has(de)) {
    std::array<char, 8> buf{};
    std::string_view info = iso8583::text_value(s.view.field(de), buf);
    if (action_codes_) {
      info = iso8583::network_code_of_function(info);  // empty: not a function code we know
    }
    if (info == "001") {
      if (c.peer_signs_on) {
        c.signed_on = true;
      }
    } else if (info == "002") {
      if (c.peer_signs_on) {
        c.signed_on = false;
      }
    } else if (info != "301" && info != "161" && info != "162" && info != "201" && info != "202") {
      code = "12";
    }
  } else if (action_codes_) {
    code = "30";
  }
  const bool built = iso8583::build_response(s.view, wire_code(s, code), {}, builder_).has_value();
  AS_ASSERT(built);  // the MTI has a response (checked) and the dialect defines DE 39
  if (s.view.has(de)) {
    builder_.copy_from(s.view, de);
  }
  respond_built(s, code);
}

// A response the switch does not answer (0110, 0810, ...). A network-management response is
// described in the connection state, for the network layer to match with its own 0800.
void Processor::on_network_response(const Slot& s, ConnectionState& c) noexcept {
  const std::uint16_t mti = s.view.mti();
  const int base = mti % 1000 - mti % 10;
  c.response_mti = 0;
  if (base != 810 && base != 830) {
    return;
  }
  c.response_mti = static_cast<std::uint16_t>(base);
  c.response_stan = UINT32_MAX;
  c.response_approved = false;
  std::array<char, 16> buf{};
  if (s.view.has(11)) {
    const std::string_view stan = iso8583::text_value(s.view.field(11), buf);
    std::uint32_t v = 0;
    bool digits = !stan.empty() && stan.size() <= 9;
    for (const char ch : stan) {
      digits = digits && ch >= '0' && ch <= '9';
      v = v * 10 + static_cast<std::uint32_t>(ch - '0');
    }
    if (digits) {
      c.response_stan = v;
    }
  }
  if (s.view.has(39)) {
    // ISO 8583:1993: only the class's "accepted" (800 in an 1814) reads as 00.
    const std::string_view de39 = iso8583::text_value(s.view.field(39), buf);
    c.response_approved =
        (action_codes_ ? iso8583::response_code_of_action(de39, mti) : de39) == "00";
  }
}

std::size_t Processor::encode_network_request(std::string_view code, std::uint32_t stan,
                                              std::int64_t now_ms,
                                              std::span<std::byte> out) noexcept {
  // DE 7 transmission date and time, MMDDhhmmss (UTC); DE 11 n6.
  const std::time_t secs = static_cast<std::time_t>(now_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::array<char, 10> de7{};
  const auto two = [&](std::size_t at, int v) {
    de7[at] = static_cast<char>('0' + v / 10 % 10);
    de7[at + 1] = static_cast<char>('0' + v % 10);
  };
  two(0, tm.tm_mon + 1);
  two(2, tm.tm_mday);
  two(4, tm.tm_hour);
  two(6, tm.tm_min);
  two(8, tm.tm_sec);
  std::array<char, 6> de11{};
  std::uint32_t v = stan % 1'000'000U;
  for (std::size_t i = de11.size(); i-- > 0;) {
    de11[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  // ISO 8583:1993: 1804 with the DE 24 function code of `code` (001 -> 801, 301 -> 831).
  const int de = action_codes_ ? 24 : 70;
  const std::string_view info = action_codes_ ? iso8583::function_code_of(code) : code;
  if (!dialect_.field(7).defined || !dialect_.field(11).defined || !dialect_.field(de).defined ||
      info.empty()) {
    return 0;  // a dialect without the network-management fields cannot carry our 0800
  }
  builder_.reset(action_codes_ ? 1804 : 800);
  builder_.set_text(7, {de7.data(), de7.size()});
  builder_.set_text(11, {de11.data(), de11.size()});
  builder_.set_text(de, info);
  const auto n = builder_.encode(out);
  return n.has_value() ? *n : 0;
}

// Everything that touches an account: picks the operation, reads keys, amounts and the card,
// then finds the card (cached, or loaded while the slot waits).
void Processor::start_financial(Slot& s) noexcept {
  const MessageView& m = s.view;
  const int base = m.mti() % 1000 - m.mti() % 10;
  std::array<char, 8> buf{};
  const std::string_view de3 = m.has(3) ? iso8583::text_value(m.field(3), buf) : "";
  if (de3.size() >= 4) {
    s.account_type = {de3[2], de3[3]};
  }
  const std::string_view type = de3.substr(0, std::min<std::size_t>(2, de3.size()));
  if (base == 120 || base == 220) {
    s.kind = Kind::kCapture;
  } else if (base == 400 || base == 420) {
    s.kind = Kind::kReverse;
  } else if (type.empty()) {
    respond(s, "30", false);  // DE 3 is mandatory in 0100 and 0200
    return;
  } else if (type == "00" || type == "01" || type == "09") {
    s.kind = base == 100 ? Kind::kAuth : Kind::kDebit;
  } else if (type == "20") {
    s.kind = Kind::kRefund;
  } else if (type == "30" || type == "31") {
    s.kind = Kind::kBalance;
  } else {
    respond(s, "12", false);  // a transaction type this issuer does not support
    return;
  }
  if (!type.empty()) {
    s.transaction_type = static_cast<std::uint8_t>((type[0] - '0') * 10 + (type[1] - '0'));
  }
  if (!read_keys(s)) {
    respond(s, "30", false);
    return;
  }
  if (!read_amounts(s)) {
    respond(s, "30", false);
    return;
  }
  if (!read_card(s)) {
    return;  // answered
  }
  fingerprint(s);
  if (const limits::CardInfo* card = directory_.find(s.token); card != nullptr) {
    on_card(s, directory_.resolve(*card));
    return;
  }
  if (directory_.load(s.token, s.card_wait, s.deadline)) {
    ++stats_.redis_errors;
    stand_in(s);
    return;
  }
  s.card_pending = true;
}

// DE 4 (or DE 95's amount left standing), DE 49, DE 18, DE 14, and the rules' view of an
// authorization. False when something mandatory is missing or malformed (answered 30).
bool Processor::read_amounts(Slot& s) noexcept {
  const MessageView& m = s.view;
  const bool takes_amount = s.kind != Kind::kBalance && s.kind != Kind::kReverse;
  if (takes_amount) {
    const auto amount = iso8583::number_value(m.field(4));
    if (!amount) {
      return false;
    }
    s.amount_minor = static_cast<std::int64_t>(*amount);
  }
  if (s.kind == Kind::kReverse && m.has(95)) {
    const auto replacement = iso8583::read_replacement_amounts(m);
    if (!replacement) {
      return false;
    }
    s.amount_minor = replacement->transaction_minor;
  }
  if (m.has(49)) {
    std::array<char, 8> cur{};
    const std::string_view c = iso8583::text_value(m.field(49), cur);
    if (c.size() != 3) {
      return false;
    }
    std::copy(c.begin(), c.end(), s.currency.begin());
  } else if (s.kind == Kind::kAuth || s.kind == Kind::kDebit || s.kind == Kind::kRefund) {
    return false;
  }
  if (m.has(18)) {
    std::array<char, 8> mcc{};
    const std::string_view v = iso8583::text_value(m.field(18), mcc);
    s.mcc_len = std::min(v.size(), s.mcc.size());
    std::copy_n(v.begin(), s.mcc_len, s.mcc.begin());
  }
  if (m.has(14)) {
    std::array<char, 8> exp{};
    const std::string_view v = iso8583::text_value(m.field(14), exp);
    s.expiry_len = std::min(v.size(), s.expiry.size());
    std::copy_n(v.begin(), s.expiry_len, s.expiry.begin());
  }
  if (s.kind == Kind::kAuth || s.kind == Kind::kDebit) {
    if (!risk::from_message(m, s.auth)) {
      return false;
    }
    s.auth.now_ms = s.now_ms;
  }
  return true;
}

// The transaction key, and for captures and reversals the hold they name (DE 90, or DE 56 in
// ISO 8583:1993): <DE 32>-<DE 7>-<DE 11>, or <DE 32>-<DE 12>-<DE 11> in 1993 dialects.
namespace {

// <acquirer without leading zeros>-<date and time>-<STAN>: a transaction key, or the hold an
// advice or reversal names.
template <typename Text>
bool append_key(Text& out, std::string_view acquirer, std::string_view time,
                std::string_view stan) noexcept {
  return out.append(strip_zeros(acquirer)) && out.append("-") && out.append(time) &&
         out.append("-") && out.append(stan);
}

}  // namespace

bool Processor::read_keys(Slot& s) noexcept {
  const MessageView& m = s.view;
  if (!m.has(key_time_de_) || !m.has(11)) {
    return false;
  }
  std::array<char, 16> de7{};
  std::array<char, 16> de11{};
  std::array<char, 16> de32{};
  const std::string_view t7 = iso8583::text_value(m.field(key_time_de_), de7);
  const std::string_view t11 = iso8583::text_value(m.field(11), de11);
  const std::string_view t32 = m.has(32) ? iso8583::text_value(m.field(32), de32) : "";
  if (!append_key(s.txn, t32, t7, t11)) {
    return false;
  }
  if (!is_advice_like(s.kind)) {
    (void)s.hold.append(s.txn.view());
    (void)s.replay.append(s.txn.view());
    return true;
  }
  if (key_time_de_ == 12 && m.has(56)) {
    const auto original = iso8583::read_original_data_93(m);
    if (!original) {
      return false;
    }
    std::array<char, 16> time{};
    std::array<char, 8> stan{};
    // No acquirer in DE 56: the original came from the same one as this message.
    const std::string_view acquirer = original->acquirer_len > 0 ? original->acquirer() : t32;
    if (!append_key(s.hold, acquirer, format_fixed(original->local_time, 12, time),
                    format_fixed(original->stan, 6, stan))) {
      return false;
    }
  } else if (key_time_de_ == 7 && m.has(90)) {
    const auto original = iso8583::read_original_data(m);
    if (!original) {
      return false;
    }
    std::array<char, 12> time{};
    std::array<char, 8> stan{};
    const std::string_view acquirer(original->acquirer_id.data(), original->acquirer_id.size());
    if (!append_key(s.hold, acquirer, format_fixed(original->transmission_time, 10, time),
                    format_fixed(original->stan, 6, stan))) {
      return false;
    }
  } else {
    (void)s.hold.append(s.txn.view());
  }
  return s.replay.append(s.txn.view()) && s.replay.append(s.kind == Kind::kCapture ? "-C" : "-R");
}

// PAN from DE 2, else from track 2 (DE 35), to its token. Answers (and returns false) when
// there is none or it is not a PAN.
bool Processor::read_card(Slot& s) noexcept {
  const MessageView& m = s.view;
  std::array<char, 48> buf{};
  std::string_view pan;
  if (m.has(2)) {
    pan = iso8583::text_value(m.field(2), buf);
  } else if (m.has(35)) {
    const auto track = iso8583::parse_track2(iso8583::text_value(m.field(35), buf));
    if (track) {
      pan = track->pan;
      if (s.expiry_len == 0 && track->expiry_yymm.size() == 4) {
        std::copy_n(track->expiry_yymm.begin(), 4, s.expiry.begin());
        s.expiry_len = 4;
      }
    }
  }
  if (pan.empty()) {
    respond(s, "30", false);
    return false;
  }
  const auto token = crypto_.tokenize(pan);
  std::fill(buf.begin(), buf.end(), '\0');  // no PAN left behind on the stack
  if (!token) {
    if (is_advice_like(s.kind)) {
      ++stats_.advices_unconfirmed;
      respond(s, "00", false);
    } else {
      respond(s, token.error() == limits::CardDataErrc::kCryptoFailure ? "96" : "14", false);
    }
    return false;
  }
  s.token = *token;
  return true;
}

// FNV-1a 64 of what makes two messages the same request: the MTI without its repeat digit, the
// card and DE 3, 4, 49, 90, 95 (absent fields hash as empty).
void Processor::fingerprint(Slot& s) noexcept {
  const MessageView& m = s.view;
  std::array<char, 8> mti{};
  std::uint64_t h = base::fnv1a64(format_fixed(m.mti() - m.mti() % 10U, 4, mti));
  h = base::fnv1a64(s.token.view(), base::fnv1a64("\x1f", h));
  for (const int de : {3, 4, 49, 90, 95}) {
    std::array<char, 64> buf{};
    h = base::fnv1a64("\x1f", h);
    if (m.has(de)) {
      h = base::fnv1a64(iso8583::text_value(m.field(de), buf), h);
    }
  }
  constexpr std::string_view kHex = "0123456789abcdef";
  for (std::size_t i = s.fingerprint.size(); i > 0; --i) {
    s.fingerprint[i - 1] = kHex[h & 0xFU];
    h >>= 4U;
  }
}

void Processor::on_card_loaded(Slot& s, const limits::CardLoadResult& r) noexcept {
  s.card_pending = false;
  if (!s.answered) {
    on_card(s, r);
  }
  maybe_free(s);
}

void Processor::on_card(Slot& s, const limits::CardLoadResult& r) noexcept {
  switch (r.status) {
    case limits::CardStatus::kFound:
      break;
    case limits::CardStatus::kNotFound:
      if (is_advice_like(s.kind)) {
        ++stats_.advices_unconfirmed;
        respond(s, "00", false);
      } else {
        respond(s, "14", false);
      }
      return;
    case limits::CardStatus::kError:
      ++stats_.redis_errors;
      stand_in(s);
      return;
    case limits::CardStatus::kProfileGone:
    case limits::CardStatus::kBadRecord:
    case limits::CardStatus::kProfileTableFull:
      answer_card_error(s);
      return;
  }
  AS_ASSERT(r.card != nullptr);
  AS_ASSERT(r.limits != nullptr);
  // The directory's records may change once the pipeline is driven again: copy what is used.
  const std::string_view account = r.card->account_id();
  s.account_len = std::min(account.size(), s.account.size());
  std::copy_n(account.begin(), s.account_len, s.account.begin());
  const risk::Channel channel = risk::channel_of(s.auth);
  s.limits = r.limits->limits(static_cast<limits::Channel>(channel));
  // The card's status and expiry as the directory copies them, for the stateless rules (the
  // script checks the authoritative ones).
  s.auth.card_status = card_status_of(r.card->state);
  s.auth.card_expiry_yymm = r.card->expiry_yymm;
  s.override_count = 0;
  for (const limits::CardOverrideRecord& o : r.card->active_overrides()) {
    risk::CardOverride& out = s.overrides[s.override_count++];
    out.rule_hash = o.rule_hash;
    out.country.assign(o.country_view());
    out.expires_ms = o.expires_ms;
  }
  submit_script(s);
}

static_assert(static_cast<int>(risk::Channel::kPos) == static_cast<int>(limits::Channel::kPos));
static_assert(static_cast<int>(risk::Channel::kCnp) == static_cast<int>(limits::Channel::kCnp));
static_assert(static_cast<int>(risk::Channel::kAtm) == static_cast<int>(limits::Channel::kAtm));

// A card record the switch cannot use (its profile is gone, the record is malformed): a
// system error (96) for requests; advices are still acknowledged, and counted as unconfirmed.
void Processor::answer_card_error(Slot& s) noexcept {
  ++stats_.card_errors;
  if (is_advice_like(s.kind)) {
    ++stats_.advices_unconfirmed;
    respond(s, "00", false);
  } else {
    respond(s, "96", false);
  }
}

// The holds call of `s`, or a place in the queue of calls waiting for room in Redis's (see
// waiting_).
void Processor::submit_script(Slot& s) noexcept {
  if (waiting_count_ > 0 || !try_submit_script(s)) {
    wait_for_queue(s);
  }
}

// Backpressure instead of stand-in: a full Redis queue (a burst, or Redis slow to read) keeps
// the request, and its slot, until there is room or its deadline passes (then stand-in as
// usual; nothing was sent, so nothing needs compensating). The slots it keeps hold back new
// requests (kBusy pauses their connections).
void Processor::wait_for_queue(Slot& s) noexcept {
  AS_ASSERT(waiting_count_ < options_.in_flight_max);
  ++s.ops;  // keeps the slot until it leaves the queue
  waiting_[(waiting_head_ + waiting_count_) % options_.in_flight_max] = s.index;
  ++waiting_count_;
  ++stats_.queue_waits;
}

void Processor::retry_waiting() noexcept {
  while (waiting_count_ > 0) {
    Slot& s = slots_[waiting_[waiting_head_]];
    // Answered meanwhile: its deadline passed (stand-in) and nothing was sent.
    if (!s.answered && !try_submit_script(s)) {
      return;  // still full: the rest wait behind it
    }
    waiting_head_ = (waiting_head_ + 1) % options_.in_flight_max;
    --waiting_count_;
    --s.ops;
    maybe_free(s);
  }
}

// Rules (auth and debit: into the call's arguments) and one FCALL of the holds library.
bool Processor::try_submit_script(Slot& s) noexcept {
  limits::CallContext ctx;
  ctx.function = function_;
  ctx.account_id = s.account_id();
  ctx.card_token = s.token.view();
  ctx.txn_key = s.replay.view();
  ctx.now_ms = s.now_ms;
  ctx.replay_window_ms = options_.replay_window_ms;
  ctx.fingerprint = s.fingerprint_text();
  const std::string_view currency(s.currency.data(), s.currency.size());
  std::span<const std::string_view> tail;
  bool ok = false;
  switch (s.kind) {
    case Kind::kAuth:
    case Kind::kDebit:
      ok = build_auth_call(s);
      if (!library_ok_) {  // the rule set's holds library could not be registered
        ++stats_.redis_errors;
        stand_in(s);
        return true;
      }
      tail = script_args_->args();
      break;
    case Kind::kRefund:
      ok = call_->set_refund(ctx, s.amount_minor, currency);
      break;
    case Kind::kBalance:
      ok = call_->set_balance(ctx);
      break;
    case Kind::kCapture:
      ok = call_->set_capture(ctx, s.hold.view(), s.amount_minor);
      break;
    case Kind::kReverse:
      ok = call_->set_reverse(ctx, s.hold.view(), s.amount_minor);
      break;
    case Kind::kNone:
      break;
  }
  if (!ok) {  // an account id the key layout refuses: a bad directory record
    answer_card_error(s);
    return true;
  }
  if (const auto refused = pipeline_.submit(call_->args(), tail, s.script_op, s.deadline)) {
    if (*refused == limits::ClientErrc::kQueueFull) {
      return false;
    }
    ++stats_.redis_errors;
    stand_in(s);
    return true;
  }
  ++s.ops;
  s.script_submitted = true;
  s.script_pending = true;
  submitted_ = true;
  return true;
}

bool Processor::build_auth_call(Slot& s) noexcept {
  const risk::RuleSet& set = rules_.current();
  if (set.generation() != policy_generation_) {
    try_adopt_rules(set);
  }
  if (!library_ok_) {
    return true;  // try_submit_script answers by stand-in
  }
  s.rules_generation = set.generation();
  const std::span<const risk::CardOverride> overrides(s.overrides.data(), s.override_count);
  set.evaluate(s.auth, overrides, network_policy_, s.risk);
  set.script_args(s.auth, s.risk, network_policy_, *script_args_);

  // The issuer's calendar (UTC) for the day and month counters and the card expiry check.
  const std::int64_t days =
      (s.now_ms >= 0 ? s.now_ms : s.now_ms - 86'399'999) / 86'400'000;  // floor division
  const CivilDate date = civil_from_days(days);
  const auto year = static_cast<std::uint64_t>(date.year);
  format_fixed(year * 10'000 + date.month * 100U + date.day, 8, day_);
  format_fixed(year * 100 + date.month, 6, month_);
  format_fixed((year % 100) * 100 + date.month, 4, yymm_);

  limits::AuthRequest r;
  r.txn_key = s.hold.view();
  r.amount_minor = s.amount_minor;
  r.currency = std::string_view(s.currency.data(), s.currency.size());
  r.channel = limits::channel_name(static_cast<limits::Channel>(risk::channel_of(s.auth)));
  r.mcc = std::string_view(s.mcc.data(), s.mcc_len);
  r.presented_expiry = std::string_view(s.expiry.data(), s.expiry_len);
  r.day = std::string_view(day_.data(), 8);
  r.month = std::string_view(month_.data(), 6);
  r.current_yymm = std::string_view(yymm_.data(), 4);
  r.partial_ok = options_.partial_approval && (s.transaction_type == 0 || s.transaction_type == 9);
  r.hold_ttl_ms = options_.hold_ttl_ms;
  r.limits = s.limits;
  return call_->set_auth(function_, s.kind == Kind::kAuth ? "auth" : "debit", s.account_id(),
                         s.token.view(), r, s.now_ms, options_.replay_window_ms,
                         s.fingerprint_text());
}

// ---------------------------------------------------------------------------------------------
// Outcomes.

void Processor::on_op_reply(Slot& s, OpKind k, const limits::Reply& r) noexcept {
  AS_ASSERT(s.busy);
  AS_ASSERT(s.ops > 0);
  --s.ops;
  switch (k) {
    case OpKind::kScript:
      s.script_pending = false;
      if (limits::Decision d; s.answered) {
        ++stats_.late_replies;  // answered by stand-in; compensated already when needed
        if (s.owed) {
          settle_late(s, limits::parse_decision(r, d) ? &d : nullptr);
        }
      } else if (limits::parse_decision(r, d)) {
        on_decision(s, d);
      } else {
        ++stats_.redis_errors;
        if (is_advice_like(s.kind)) {
          ++stats_.advices_unconfirmed;
          respond(s, "00", false);
          reconcile(s, ReconKind::kUnconfirmedAdvice);
        } else {
          respond(s, "96", false);
        }
      }
      break;
    case OpKind::kDue:
      if (r.type == limits::Reply::Type::kError) {
        ++stats_.due_note_errors;
      }
      break;
    case OpKind::kCompensate:
      if (r.type != limits::Reply::Type::kArray) {
        ++stats_.compensation_failures;
        reconcile(s, ReconKind::kCompensation);
      }
      break;
  }
  maybe_free(s);
}

void Processor::on_op_error(Slot& s, OpKind k, limits::ClientErrc e, bool noscript) noexcept {
  AS_ASSERT(s.busy);
  AS_ASSERT(s.ops > 0);
  --s.ops;
  switch (k) {
    case OpKind::kScript:
      s.script_pending = false;
      if (e == limits::ClientErrc::kTimeout) {
        if (!s.answered) {
          ++stats_.timeouts;
        }
      } else {
        ++stats_.redis_errors;
      }
      if (!s.answered) {
        if (noscript && !s.retried) {
          s.retried = true;  // the script is being reloaded ahead of this retry
          submit_script(s);
        } else {
          stand_in(s);
        }
      } else if (s.owed) {
        settle_late(s, nullptr);  // a timeout's late reply may still apply: the replay sees it
      }
      break;
    case OpKind::kDue:
      ++stats_.due_note_errors;
      break;
    case OpKind::kCompensate:
      ++stats_.compensation_failures;
      reconcile(s, ReconKind::kCompensation);
      break;
  }
  maybe_free(s);
}

// The set that decided `s` (its rule numbers are that set's), or null: no rules ran, or a
// reload has replaced it since (the reader holds one set at a time; the generation in the slot
// still says which set it was).
const risk::RuleSet* Processor::decided_by(const Slot& s) noexcept {
  if (s.rules_generation == 0) {
    return nullptr;
  }
  const risk::RuleSet& set = rules_.current();
  return set.generation() == s.rules_generation ? &set : nullptr;
}

void Processor::on_decision(Slot& s, const limits::Decision& d) noexcept {
  if (s.kind == Kind::kAuth || s.kind == Kind::kDebit) {
    if (const risk::RuleSet* set = decided_by(s)) {
      set->add_fired_velocity(d.fired_text(), s.risk);
    }
  }
  const std::string_view code = code_of(d);
  switch (s.kind) {
    case Kind::kAuth:
    case Kind::kDebit:
    case Kind::kRefund: {
      const bool approved = d.approved();
      (void)iso8583::build_response(s.view, wire_code(s, code), approved ? approval_code(s) : "",
                                    builder_);
      if (code == "10") {
        builder_.set_number(4, static_cast<std::uint64_t>(d.approved_minor));
      }
      respond_built(s, code);
      if (s.kind == Kind::kAuth && approved && d.approved_minor > 0) {
        note_due(s);
      }
      return;
    }
    case Kind::kBalance: {
      (void)iso8583::build_response(s.view, wire_code(s, code), {}, builder_);
      if (code == "00" && dialect_.field(54).defined) {
        builder_.set_text(54, additional_amounts(s, d));
      }
      respond_built(s, code);
      return;
    }
    case Kind::kCapture:
    case Kind::kReverse:
    case Kind::kNone:
      respond(s, "00", false);  // always acknowledged; the script's own code is informative
      return;
  }
}

// DE 54 (ISO 8583:1987 additional amounts, an..120 in 20-character entries): account type
// (DE 3 positions 3-4), amount type (01 ledger, 02 available), currency (the request's DE 49),
// sign (C credit, D debit) and 12 digits; ledger first, then available.
std::string_view Processor::additional_amounts(const Slot& s, const limits::Decision& d) noexcept {
  std::size_t pos = 0;
  const auto entry = [&](std::string_view amount_type, std::int64_t amount) {
    de54_[pos++] = s.account_type[0];
    de54_[pos++] = s.account_type[1];
    de54_[pos++] = amount_type[0];
    de54_[pos++] = amount_type[1];
    std::copy(s.currency.begin(), s.currency.end(),
              de54_.begin() + static_cast<std::ptrdiff_t>(pos));
    pos += 3;
    de54_[pos++] = amount < 0 ? 'D' : 'C';
    const std::uint64_t magnitude =
        amount < 0 ? 0 - static_cast<std::uint64_t>(amount) : static_cast<std::uint64_t>(amount);
    (void)format_fixed(magnitude, 12, std::span(de54_).subspan(pos, 12));
    pos += 12;
  };
  entry("01", d.balance_minor);
  entry("02", d.available_minor);
  return {de54_.data(), pos};
}

// The prefix, then digits of FNV-1a 64 of the transaction key: the same for a replayed request.
std::string_view Processor::approval_code(const Slot& s) noexcept {
  const std::string_view prefix = options_.approval_prefix;
  std::copy(prefix.begin(), prefix.end(), approval_.begin());
  std::uint64_t h = base::fnv1a64(s.hold.view());
  for (std::size_t i = approval_.size(); i > prefix.size(); --i) {
    approval_[i - 1] = static_cast<char>('0' + h % 10);
    h /= 10;
  }
  return {approval_.data(), approval_.size()};
}

// The request was not decided in time, or Redis could not be asked.
void Processor::stand_in(Slot& s) noexcept {
  AS_ASSERT(!s.answered);
  switch (s.kind) {
    case Kind::kAuth:
    case Kind::kDebit:
      if (options_.stand_in.kind == StandInPolicy::Kind::kApproveUpTo &&
          s.amount_minor <= options_.stand_in.approve_up_to_minor) {
        ++stats_.stand_in_approvals;  // a hold may or may not exist: reconcile
        (void)iso8583::build_response(s.view, wire_code(s, "00"), approval_code(s), builder_);
        respond_built(s, "00");
        owe(s);
        return;
      }
      [[fallthrough]];
    case Kind::kRefund:
      ++stats_.stand_in_declines;
      respond(s, "91", false);
      if (s.script_submitted) {
        compensate(s);
      }
      return;
    case Kind::kBalance:
    case Kind::kNone:
      ++stats_.stand_in_declines;
      respond(s, "91", false);
      return;
    case Kind::kCapture:
    case Kind::kReverse:
      ++stats_.advices_unconfirmed;
      respond(s, "00", false);
      owe(s);
      return;
  }
}

// Full reversal of the hold (or debit, or refund) a request answered 91 may still create: it is
// queued behind that call on the same connection, so it runs after it whatever it did.
void Processor::compensate(Slot& s) noexcept {
  s.aux.clear();
  if (!s.aux.append(s.hold.view()) || !s.aux.append("-si")) {
    ++stats_.compensation_failures;
    reconcile(s, ReconKind::kCompensation, ReconState::kUnresolved, "key_too_long");
    return;
  }
  limits::CallContext ctx;
  ctx.function = function_;
  ctx.account_id = s.account_id();
  ctx.card_token = s.token.view();
  ctx.txn_key = s.aux.view();
  ctx.now_ms = s.now_ms;
  ctx.replay_window_ms = options_.replay_window_ms;
  ctx.fingerprint = "si";
  if (!call_->set_reverse(ctx, s.hold.view(), 0)) {
    ++stats_.compensation_failures;
    reconcile(s, ReconKind::kCompensation, ReconState::kUnresolved, "bad_keys");
    return;
  }
  if (pipeline_.submit(call_->args(), s.compensate_op, housekeeping_deadline())) {
    ++stats_.compensation_failures;
    reconcile(s, ReconKind::kCompensation);
    return;
  }
  ++s.ops;
  ++stats_.compensations;
  submitted_ = true;
}

// A stand-in answer (approval, or an acknowledged advice or reversal) whose Redis outcome is
// owed: to the reconciler now when no script call is outstanding, else once it completes
// (settle_late).
void Processor::owe(Slot& s) noexcept {
  if (options_.reconciler == nullptr) {
    return;
  }
  if (s.script_pending) {
    s.owed = true;
    return;
  }
  reconcile(s, s.kind == Kind::kAuth || s.kind == Kind::kDebit ? ReconKind::kStandInApproval
                                                               : ReconKind::kUnconfirmedAdvice);
}

// The script call of a request answered by stand-in completed: `d` is its decision, or nullptr
// (failed, timed out, unparseable). An approval in full (a stand-in approval), or any decision
// (an acknowledged advice), is what the stand-in answer said: journaled as applied. Anything
// else is replayed by the reconciler.
void Processor::settle_late(Slot& s, const limits::Decision* d) noexcept {
  s.owed = false;
  const bool approval = s.kind == Kind::kAuth || s.kind == Kind::kDebit;
  const ReconKind kind = approval ? ReconKind::kStandInApproval : ReconKind::kUnconfirmedAdvice;
  if (d != nullptr && (!approval || d->code() == "00")) {
    reconcile(s, kind, ReconState::kApplied, "late_original");
  } else {
    reconcile(s, kind);
  }
}

// Hands the request's owed call to the reconciler (kQueued), or journals an outcome there.
void Processor::reconcile(const Slot& s, ReconKind kind, ReconState outcome,
                          std::string_view detail) noexcept {
  Reconciler* const r = options_.reconciler;
  if (r == nullptr) {
    return;
  }
  ReconItem it;
  it.kind = kind;
  it.network = options_.network_index;
  it.now_ms = s.now_ms;
  it.amount_minor = s.amount_minor;
  it.currency = s.currency;
  it.channel = static_cast<limits::Channel>(risk::channel_of(s.auth));
  (void)it.account.assign(s.account_id());
  it.token = s.token;
  (void)it.hold_id.assign(s.hold.view());
  (void)it.replay_key.assign(s.replay.view());
  (void)it.fingerprint.assign(s.fingerprint_text());
  (void)it.mcc.assign(std::string_view(s.mcc.data(), s.mcc_len));
  switch (kind) {
    case ReconKind::kStandInApproval:
      it.op = s.kind == Kind::kDebit ? ReconItem::Op::kForceDebit : ReconItem::Op::kForceAuth;
      break;
    case ReconKind::kUnconfirmedAdvice:
      it.op = s.kind == Kind::kCapture ? ReconItem::Op::kCapture : ReconItem::Op::kReverse;
      break;
    case ReconKind::kCompensation:  // the full reversal compensate() asked for
      it.op = ReconItem::Op::kReverse;
      it.amount_minor = 0;
      (void)it.replay_key.assign(s.aux.view());
      (void)it.fingerprint.assign("si");
      break;
  }
  if (s.view.has(2)) {
    std::array<char, 32> pan{};
    std::array<char, 32> masked{};
    const std::string_view text = iso8583::text_value(s.view.field(2), pan);
    if (const auto m = limits::mask_pan(text, masked)) {
      it.masked_pan.assign_cut(*m);
    }
    std::fill(pan.begin(), pan.end(), '\0');  // no PAN left behind on the stack
  }
  if (outcome != ReconState::kQueued) {
    r->record(it, outcome, detail);
    return;
  }
  ++stats_.reconciliations;
  if (!r->enqueue(it)) {
    ++stats_.reconcile_refused;
  }
}

// The sweeper's index: this account has a pending hold expiring at most then.
void Processor::note_due(Slot& s) noexcept {
  if (!due_.set(s.account_id(), s.now_ms + options_.hold_ttl_ms) ||
      pipeline_.submit(due_.args(), s.due_op, housekeeping_deadline())) {
    ++stats_.due_note_errors;
    return;
  }
  ++s.ops;
  submitted_ = true;
}

Processor::Clock::time_point Processor::housekeeping_deadline() const noexcept {
  return now_ + options_.housekeeping_timeout;
}

void Processor::respond(Slot& s, std::string_view code, bool approval) noexcept {
  const bool built = iso8583::build_response(s.view, wire_code(s, code),
                                             approval ? approval_code(s) : "", builder_)
                         .has_value();
  AS_ASSERT(built);  // the MTI has a response (checked) and the dialect defines DE 38, 39
  if (code == "30") {
    // A format error echoes the keys for matching, never card data (PAN, track, PIN block).
    for (int de = 2; de <= iso8583::kMaxField; ++de) {
      if (de != 65 && builder_.has(de) && dialect_.field(de).sensitive) {
        builder_.clear(de);
      }
    }
  }
  respond_built(s, code);
}

// DE 39 as the network's dialect carries `code` (the switch's ISO 8583:1987 response code):
// itself, or in an ISO 8583:1993 dialect the action code of it for the response's message class
// (iso8583/action_codes.h; static strings, no allocation).
std::string_view Processor::wire_code(const Slot& s, std::string_view code) const noexcept {
  return action_codes_ ? iso8583::action_code_of(code, s.view.mti()) : code;
}

// Encodes what builder_ holds and hands it to the sink: the request's one response.
void Processor::respond_built(Slot& s, std::string_view code) noexcept {
  AS_ASSERT(!s.answered);
  const auto n = builder_.encode({out_.get(), out_size_});
  // Every value was validated when the request was decoded, or is produced here in the
  // field's format: a failure is a bug.
  AS_ASSERT(n.has_value());
  s.answered = true;
  if (code == "00" || code == "10") {
    ++stats_.approved;
  } else if (code == "30") {
    ++stats_.format_errors;
  } else if (code == "91" || code == "96") {
    ++stats_.system_errors;
  } else {
    ++stats_.declined;
  }
  if (options_.audit != nullptr) {
    audit(s, code);
  }
  if (options_.metrics != nullptr) {
    const std::array<char, 4> mti = s.view.mti_text();
    const MtiClass c = classify_mti({mti.data(), mti.size()});
    options_.metrics->request(options_.network_index, c);
    options_.metrics->response(options_.network_index, c, code);
    options_.metrics->latency(options_.network_index,
                              Clock::now() - (s.deadline - options_.budget));
  }
  sink_.on_response(s.request_id, {out_.get(), *n});
}

// One AuditRecord per response: masked PAN, amount, code, the rules that fired, latency.
void Processor::audit(const Slot& s, std::string_view code) noexcept {
  AuditRecord r;
  r.time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  const auto arrival = s.deadline - options_.budget;
  r.latency_us = static_cast<std::uint32_t>(std::clamp<std::int64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - arrival).count(), 0,
      std::int64_t{UINT32_MAX}));
  r.network = options_.network_index;
  r.mti = s.view.mti();
  r.amount_minor = s.amount_minor;
  r.currency = static_cast<std::uint16_t>((s.currency[0] - '0') * 100 + (s.currency[1] - '0') * 10 +
                                          (s.currency[2] - '0'));
  r.code = {code.size() > 0 ? code[0] : '?', code.size() > 1 ? code[1] : '?'};
  if (s.view.has(2)) {
    std::array<char, 32> pan{};
    std::array<char, 32> masked{};
    const std::string_view text = iso8583::text_value(s.view.field(2), pan);
    if (const auto m = limits::mask_pan(text, masked)) {
      r.set_masked_pan(*m);
    }
  }
  std::array<char, 96> reasons{};
  std::size_t len = 0;
  // Only the set that decided can name its version and rules; the generation is kept either way.
  r.rules_generation = s.rules_generation;
  if (const risk::RuleSet* set = decided_by(s)) {
    r.set_rules_version(set->version());
    for (const risk::FiredRule& f : s.risk.fired_rules()) {
      if (f.rule >= set->rules().size()) {
        continue;  // not a rule of this set: never named
      }
      const std::string_view id = set->rules()[f.rule].id;
      // Shadow rules are reported too (they never changed the outcome), marked as such.
      const std::string_view mark = f.shadow ? "(shadow)" : "";
      if (len + id.size() + mark.size() + 1 > reasons.size()) {
        break;
      }
      if (len > 0) {
        reasons[len++] = ';';
      }
      std::copy(id.begin(), id.end(), reasons.begin() + static_cast<std::ptrdiff_t>(len));
      len += id.size();
      std::copy(mark.begin(), mark.end(), reasons.begin() + static_cast<std::ptrdiff_t>(len));
      len += mark.size();
    }
  }
  r.set_reasons({reasons.data(), len});
  if (!options_.audit->append(r)) {
    ++stats_.audit_dropped;
  }
}

void Processor::maybe_free(Slot& s) noexcept {
  if (!s.busy || !s.answered || s.ops > 0 || s.card_pending) {
    return;
  }
  s.busy = false;
  AS_ASSERT(free_count_ < options_.in_flight_max);
  free_[free_count_++] = s.index;
  --in_use_;
}

// ---------------------------------------------------------------------------------------------
// Ticks.

void Processor::on_tick(Clock::time_point now) noexcept {
  now_ = std::max(now_, now);
  // An idle shard still lets old rule sets go, and a network without authorizations still moves
  // to the current set's holds library, so the one it replaced is released (and deleted).
  const risk::RuleSet& set = rules_.current();
  if (set.generation() != policy_generation_ || (!library_ok_ && now_ >= adopt_retry_at_)) {
    try_adopt_rules(set);
  }
  if (in_use_ > 0) {
    for (std::size_t i = 0; i < options_.in_flight_max; ++i) {
      if (deadlines_[i] > now) {
        continue;
      }
      deadlines_[i] = Clock::time_point::max();  // answered already, or answered now
      Slot& s = slots_[i];
      if (s.busy && !s.answered && s.deadline <= now) {
        ++stats_.timeouts;
        stand_in(s);
        maybe_free(s);
      }
    }
  }
  if (waiting_count_ > 0) {
    retry_waiting();  // the last flush may have made room in the Redis queue
  }
  if (submitted_) {
    submitted_ = false;
    pipeline_.flush();
  }
}

}  // namespace authswitch::switching
