#include "risk/rule_store.h"

#include <algorithm>
#include <stdexcept>

#include "base/assert.h"

namespace authswitch::risk {

RuleStore::RuleStore(std::unique_ptr<const RuleSet> initial) : current_(initial.get()) {
  AS_ASSERT(initial != nullptr);
  owned_.push_back(std::move(initial));
}

RuleStore::~RuleStore() = default;

RuleStore::Reader RuleStore::reader() {
  const std::size_t slot = readers_.load(std::memory_order_relaxed);
  if (slot == kReadersMax) {
    throw std::length_error("RuleStore: more than 64 readers");
  }
  // A new reader holds nothing yet: announcing the current generation is conservative.
  announced_[slot].value.store(owned_.back()->generation(), std::memory_order_seq_cst);
  readers_.store(slot + 1, std::memory_order_release);
  return Reader(*this, slot);
}

void RuleStore::publish(std::unique_ptr<const RuleSet> next) {
  AS_ASSERT(next != nullptr);
  AS_ASSERT(next->generation() > owned_.back()->generation());
  current_.store(next.get(), std::memory_order_seq_cst);
  owned_.push_back(std::move(next));
  reclaim();
}

std::size_t RuleStore::reclaim() {
  // A reader whose announced generation is <= g may still hold the set of generation g (it may
  // have loaded it and not announced yet): only sets older than every announcement are free.
  std::uint64_t oldest = owned_.back()->generation();
  const std::size_t readers = readers_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < readers; ++i) {
    oldest = std::min(oldest, announced_[i].value.load(std::memory_order_seq_cst));
  }
  const auto keep = std::find_if(owned_.begin(), owned_.end() - 1,
                                 [&](const auto& set) { return set->generation() >= oldest; });
  owned_.erase(owned_.begin(), keep);
  return owned_.size() - 1;
}

}  // namespace authswitch::risk
