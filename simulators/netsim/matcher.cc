#include "simulators/netsim/matcher.h"

#include <algorithm>
#include <bit>

#include "base/assert.h"
#include "base/hash.h"

namespace authswitch::netsim {

namespace {

template <std::size_t N>
void copy_cut(std::string_view s, std::array<char, N>& out) noexcept {
  const std::size_t n = std::min(s.size(), N);
  std::copy_n(s.begin(), n, out.begin());
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(n), out.end(), '\0');
}

std::string_view view_of(const auto& a) noexcept { return {a.data(), a.size()}; }

}  // namespace

MatchKey make_key(std::uint16_t mti_class, std::string_view de11, std::string_view de41,
                  std::string_view de37) noexcept {
  MatchKey k;
  k.mti_class = mti_class;
  copy_cut(de11, k.stan);
  copy_cut(de41, k.terminal);
  copy_cut(de37, k.rrn);
  return k;
}

Matcher::Matcher(Options options) : timeout_ns_(options.timeout_ns) {
  const std::uint32_t capacity = std::bit_ceil(std::max<std::uint32_t>(options.capacity, 16));
  AS_ASSERT(capacity <= (1U << 26U));
  entries_.resize(capacity);
  index_.assign(std::size_t{capacity} * 2, kEmpty);
  entry_mask_ = capacity - 1;
  index_mask_ = index_.size() - 1;
}

// FNV-1a over the key's text. The keys come from netsim's own requests and the switch's echoes
// of them, not from an adversary, so a keyless hash is enough.
std::size_t Matcher::home(const MatchKey& key) const noexcept {
  std::uint64_t h = base::fnv1a64(
      std::string_view(reinterpret_cast<const char*>(&key.mti_class), sizeof key.mti_class));
  h = base::fnv1a64(view_of(key.stan), h);
  h = base::fnv1a64(view_of(key.terminal), h);
  h = base::fnv1a64(view_of(key.rrn), h);
  return static_cast<std::size_t>(h ^ (h >> 29U)) & index_mask_;
}

std::size_t Matcher::find(const MatchKey& key) const noexcept {
  for (std::size_t pos = home(key);; pos = (pos + 1) & index_mask_) {
    const std::uint32_t slot = index_[pos];
    if (slot == kEmpty) {
      return SIZE_MAX;
    }
    if (entries_[slot].key == key) {
      return pos;
    }
  }
}

void Matcher::insert(std::uint32_t slot) noexcept {
  std::size_t pos = home(entries_[slot].key);
  while (index_[pos] != kEmpty) {
    pos = (pos + 1) & index_mask_;
  }
  index_[pos] = slot;
  entries_[slot].indexed = true;
}

// Backward-shift deletion (Knuth 6.4, algorithm R): later entries of the probe run move into the
// hole when their home position allows, so lookups never need tombstones.
void Matcher::erase_at(std::size_t pos) noexcept {
  AS_ASSERT(index_[pos] != kEmpty);
  entries_[index_[pos]].indexed = false;
  std::size_t hole = pos;
  for (std::size_t next = (hole + 1) & index_mask_; index_[next] != kEmpty;
       next = (next + 1) & index_mask_) {
    const std::size_t want = home(entries_[index_[next]].key);
    // Move `next` into the hole unless its home lies cyclically in (hole, next].
    const bool stays = hole <= next ? (hole < want && want <= next) : (hole < want || want <= next);
    if (!stays) {
      index_[hole] = index_[next];
      hole = next;
    }
  }
  index_[hole] = kEmpty;
}

bool Matcher::has_room() const noexcept {
  return entries_[head_ & entry_mask_].state != State::kPending;
}

Matcher::AddStatus Matcher::add(const MatchKey& key, std::uint64_t start_ns, std::uint64_t sent_ns,
                                std::uint32_t tag) noexcept {
  const auto slot = static_cast<std::uint32_t>(head_ & entry_mask_);
  Entry& e = entries_[slot];
  if (e.state == State::kPending) {
    return AddStatus::kFull;
  }
  if (const std::size_t pos = find(key); pos != SIZE_MAX) {
    if (entries_[index_[pos]].state == State::kPending) {
      return AddStatus::kKeyInUse;
    }
    erase_at(pos);  // an answered or timed-out request of the same key: forget it
  }
  if (e.indexed) {
    const std::size_t old = find(e.key);
    AS_ASSERT(old != SIZE_MAX);
    erase_at(old);
  }
  e.key = key;
  e.state = State::kPending;
  e.tag = tag;
  e.start_ns = std::min(start_ns, sent_ns);
  e.sent_ns = sent_ns;
  // Deadlines never decrease along the ring, so expire() stops at the first one not due.
  e.deadline_ns = std::max(sent_ns + timeout_ns_, last_deadline_ns_);
  last_deadline_ns_ = e.deadline_ns;
  insert(slot);
  ++head_;
  tail_ = std::max(tail_, head_ - std::min<std::uint64_t>(head_, entries_.size()));
  ++pending_;
  ++counts_.added;
  return AddStatus::kAdded;
}

Matcher::Match Matcher::on_response(const MatchKey& key) noexcept {
  Match m;
  const std::size_t pos = find(key);
  if (pos == SIZE_MAX) {
    ++counts_.unmatched;
    m.outcome = Outcome::kUnmatched;
    return m;
  }
  Entry& e = entries_[index_[pos]];
  switch (e.state) {
    case State::kPending:
      e.state = State::kAnswered;
      --pending_;
      ++counts_.matched;
      m.outcome = Outcome::kMatched;
      m.tag = e.tag;
      m.start_ns = e.start_ns;
      m.sent_ns = e.sent_ns;
      break;
    case State::kTimedOut:
      e.state = State::kAnswered;  // a further answer is a duplicate
      ++counts_.late;
      m.outcome = Outcome::kLate;
      break;
    case State::kAnswered:
      ++counts_.duplicates;
      m.outcome = Outcome::kDuplicate;
      break;
    case State::kFree:
      AS_ASSERT(false);  // a free entry is never indexed
      break;
  }
  return m;
}

void Matcher::advance_tail() noexcept {
  while (tail_ < head_ && entries_[tail_ & entry_mask_].state != State::kPending) {
    ++tail_;
  }
}

std::uint64_t Matcher::next_deadline_ns() noexcept {
  advance_tail();
  return tail_ < head_ ? entries_[tail_ & entry_mask_].deadline_ns : UINT64_MAX;
}

}  // namespace authswitch::netsim
