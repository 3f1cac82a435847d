#pragma once
// Publishes immutable RuleSets (risk/rules.h) to the switch's shard threads, so a reload
// (SIGHUP, admin command) swaps the whole set at once: every authorization is decided by one
// complete set, old or new, never a mix, and no request is lost or waits (STYLE.md: "rule
// reloads publish immutable snapshots by atomic pointer swap").
//
// Readers (one per shard thread) call Reader::current() at the start of each batch: one
// acquire load, and when the set changed one release store announcing which set the reader now
// uses. The returned set stays valid until that reader's next current() call. The writer
// (publish, reclaim: one control thread) retires the old set and frees a retired set only when
// every reader has announced a newer one; an idle reader keeps old sets alive, so shards call
// current() on their idle tick too.
//
// Thread-safety: Reader: its own thread only. publish/reclaim/latest: one writer thread.
// reader(): at startup, before readers run.

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "risk/rules.h"

namespace authswitch::risk {

class RuleStore {
 public:
  static constexpr std::size_t kReadersMax = 64;

  explicit RuleStore(std::unique_ptr<const RuleSet> initial);
  ~RuleStore();
  RuleStore(const RuleStore&) = delete;
  RuleStore& operator=(const RuleStore&) = delete;
  RuleStore(RuleStore&&) = delete;
  RuleStore& operator=(RuleStore&&) = delete;

  class Reader {
   public:
    // The current set; valid until this reader's next call. Wait-free, no allocation.
    [[nodiscard]] const RuleSet& current() noexcept {
      const RuleSet* latest = store_->current_.load(std::memory_order_acquire);
      if (latest != held_) {
        held_ = latest;
        store_->announced_[slot_].value.store(latest->generation(), std::memory_order_seq_cst);
      }
      return *held_;
    }

   private:
    friend class RuleStore;
    Reader(RuleStore& store, std::size_t slot) noexcept : store_(&store), slot_(slot) {}

    RuleStore* store_;
    std::size_t slot_;
    const RuleSet* held_ = nullptr;
  };

  // Registers a reader. Startup only; throws std::length_error past kReadersMax.
  [[nodiscard]] Reader reader();

  // Makes `next` the current set and retires the previous one; then reclaims.
  void publish(std::unique_ptr<const RuleSet> next);
  // Frees retired sets that no reader can still hold. Returns how many are still retired.
  std::size_t reclaim();
  // The set most recently published (writer thread).
  [[nodiscard]] const RuleSet& latest() const noexcept { return *owned_.back(); }

 private:
  struct alignas(64) Announced {
    std::atomic<std::uint64_t> value{0};
  };

  std::atomic<const RuleSet*> current_;
  std::array<Announced, kReadersMax> announced_{};
  std::atomic<std::size_t> readers_{0};
  // owned_.back() is current; the others are retired, oldest first.
  std::vector<std::unique_ptr<const RuleSet>> owned_;
};

}  // namespace authswitch::risk
