#pragma once
// Matcher: pairs the switch's responses with the requests netsim sent, by the request's own
// keys (issue 6): the MTI class (a response's MTI minus 10, with the repeat digit of a request
// cleared: 0101 and 0100 are class 0100, answered by 0110), DE 11, DE 41 and DE 37.
//
// It classifies every response as matched (its request is waiting), late (its request timed
// out before it came), duplicate (its request was answered already) or unmatched (no request
// with that key is remembered), and times requests out (`timeout_ns` after they were sent).
//
// Memory: a fixed-capacity ring of entries in send order plus an open-addressing index (linear
// probing, backward-shift deletion), both allocated in the constructor; nothing allocates
// afterwards. An entry outlives its request: once answered or timed out it stays as a
// tombstone until the ring comes round to its slot again, so a late or duplicate answer is
// recognised for `capacity` sends. When the next ring slot still holds a waiting request the
// matcher is full and add() refuses (the caller holds the send back: backpressure).
//
// Time is passed in by the caller (nanoseconds of any monotonic clock), so tests inject it.
// Thread-safety: none; one thread owns a Matcher.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace authswitch::netsim {

// A request/response key as fixed text (values longer than a field's room are cut; absent
// fields are empty).
struct MatchKey {
  std::uint16_t mti_class = 0;
  std::array<char, 12> stan{};      // DE 11 (n6 in 1987 dialects, up to n12 in 1993)
  std::array<char, 16> terminal{};  // DE 41 (ans8; 16 for dialects that widen it)
  std::array<char, 12> rrn{};       // DE 37 (an12)

  friend bool operator==(const MatchKey&, const MatchKey&) = default;
};

// The class of a request MTI: the repeat digit cleared (0101 -> 100, 0421 -> 420).
[[nodiscard]] constexpr std::uint16_t request_class(std::uint16_t mti) noexcept {
  return mti % 2 == 1 ? static_cast<std::uint16_t>(mti - 1) : mti;
}
// The class of a response MTI: the request class it answers (0110 -> 100, 0430 -> 420), or 0
// when `mti` is not a response (function digit 1 or 3).
[[nodiscard]] constexpr std::uint16_t response_class(std::uint16_t mti) noexcept {
  const auto function = (mti / 10) % 10;
  if (function != 1 && function != 3) {
    return 0;
  }
  return request_class(static_cast<std::uint16_t>(mti - 10));
}

[[nodiscard]] MatchKey make_key(std::uint16_t mti_class, std::string_view de11,
                                std::string_view de41, std::string_view de37) noexcept;

class Matcher {
 public:
  struct Options {
    // Entries remembered (rounded up to a power of two, at least 16): waiting requests plus
    // tombstones of answered ones.
    std::uint32_t capacity = 1U << 16U;
    std::uint64_t timeout_ns = 2'000'000'000;
  };
  enum class AddStatus : std::uint8_t {
    kAdded,
    kKeyInUse,  // a request with this key is still waiting
    kFull,      // the next ring slot holds a waiting request
  };
  enum class Outcome : std::uint8_t { kMatched, kLate, kDuplicate, kUnmatched };
  struct Match {
    Outcome outcome = Outcome::kUnmatched;
    std::uint32_t tag = 0;       // the caller's tag given to add() (kMatched only)
    std::uint64_t start_ns = 0;  // where latency counts from (kMatched only)
    std::uint64_t sent_ns = 0;   // when it was sent (kMatched only)
  };
  struct Counts {
    std::uint64_t added = 0;
    std::uint64_t matched = 0;
    std::uint64_t late = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t unmatched = 0;
    std::uint64_t timeouts = 0;
  };

  explicit Matcher(Options options);
  ~Matcher() = default;
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;
  Matcher(Matcher&&) = delete;
  Matcher& operator=(Matcher&&) = delete;

  // Remembers a request sent at `sent_ns` whose latency counts from `start_ns` (its intended
  // send time in an open-loop run; start_ns <= sent_ns). Its deadline is sent_ns + timeout.
  // A remembered answered or timed-out request with the same key is forgotten (a
  // retransmission after an answer re-arms its key). REQUIRES: sent_ns never decreases.
  [[nodiscard]] AddStatus add(const MatchKey& key, std::uint64_t start_ns, std::uint64_t sent_ns,
                              std::uint32_t tag) noexcept;
  // True when add() would not return kFull.
  [[nodiscard]] bool has_room() const noexcept;

  // Classifies one response by its key and counts it.
  [[nodiscard]] Match on_response(const MatchKey& key) noexcept;

  // Times out every waiting request whose deadline is at or before `now_ns`, oldest first,
  // calling on_timeout(tag, start_ns) for each. Returns how many timed out.
  template <typename F>
  std::size_t expire(std::uint64_t now_ns, F&& on_timeout);

  // The earliest deadline of a waiting request, or UINT64_MAX when none waits.
  [[nodiscard]] std::uint64_t next_deadline_ns() noexcept;

  [[nodiscard]] std::size_t pending() const noexcept { return pending_; }
  [[nodiscard]] const Counts& counts() const noexcept { return counts_; }
  [[nodiscard]] std::size_t capacity() const noexcept { return entries_.size(); }

 private:
  enum class State : std::uint8_t { kFree, kPending, kAnswered, kTimedOut };
  struct Entry {
    MatchKey key;
    State state = State::kFree;
    bool indexed = false;
    std::uint32_t tag = 0;
    std::uint64_t start_ns = 0;
    std::uint64_t sent_ns = 0;
    std::uint64_t deadline_ns = 0;
  };
  static constexpr std::uint32_t kEmpty = 0xFFFF'FFFFU;

  [[nodiscard]] std::size_t home(const MatchKey& key) const noexcept;
  // The index position holding `key`, or SIZE_MAX.
  [[nodiscard]] std::size_t find(const MatchKey& key) const noexcept;
  void insert(std::uint32_t slot) noexcept;
  void erase_at(std::size_t pos) noexcept;
  // Skips settled entries at the tail; stops at the oldest waiting one.
  void advance_tail() noexcept;

  std::vector<Entry> entries_;        // the ring, in send order
  std::vector<std::uint32_t> index_;  // entry slot per position, kEmpty when free
  std::size_t entry_mask_ = 0;
  std::size_t index_mask_ = 0;
  std::uint64_t head_ = 0;  // sequence number of the next entry
  std::uint64_t tail_ = 0;  // oldest entry that may still be waiting
  std::uint64_t timeout_ns_;
  std::uint64_t last_deadline_ns_ = 0;
  std::size_t pending_ = 0;
  Counts counts_;
};

template <typename F>
std::size_t Matcher::expire(std::uint64_t now_ns, F&& on_timeout) {
  std::size_t n = 0;
  while (tail_ < head_) {
    Entry& e = entries_[tail_ & entry_mask_];
    if (e.state == State::kPending) {
      if (e.deadline_ns > now_ns) {
        break;
      }
      e.state = State::kTimedOut;
      --pending_;
      ++counts_.timeouts;
      ++n;
      on_timeout(e.tag, e.start_ns);
    }
    ++tail_;
  }
  return n;
}

}  // namespace authswitch::netsim
