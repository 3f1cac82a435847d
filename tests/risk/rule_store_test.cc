// RuleStore (risk/rule_store.h): a reload swaps the whole set while readers evaluate; every
// decision comes from one complete set; old sets are freed once no reader can hold them. Run
// under the tsan preset too (scripts/test runs the tsan build of risk_tests).
#include "risk/rule_store.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace authswitch::risk {
namespace {

// Set k declines amounts above k and records k as its version.
std::unique_ptr<const RuleSet> set_for(int k) {
  return compile_rules("version = \"" + std::to_string(k) +
                           "\"\n[[rule]]\nid = \"limit\"\nwhen = \"amount > " + std::to_string(k) +
                           "\"\naction = \"decline\"\n[[rule]]\nid = \"same\"\nwhen = \"amount > " +
                           std::to_string(k) + "\"\naction = \"score\"\nscore = 1\n",
                       "gen.toml");
}

TEST(RuleStore, ReadersSeeWholeSetsWhileTheWriterReloads) {
  RuleStore store(set_for(0));
  constexpr int kReaders = 3;
  constexpr int kReloads = 300;
  std::vector<RuleStore::Reader> readers;
  for (int i = 0; i < kReaders; ++i) {
    readers.push_back(store.reader());
  }
  std::atomic<bool> done{false};
  std::atomic<int> inconsistent{0};
  std::atomic<long> decisions{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      Authorization a;
      a.amount_minor = 150;
      RiskDecision d;
      while (!done.load(std::memory_order_relaxed)) {
        const RuleSet& set = readers[static_cast<std::size_t>(r)].current();
        const int k = std::stoi(std::string(set.version()));
        set.evaluate(a, {}, 0, d);
        // Both rules of one set agree, and the decision names that set.
        const bool declines = a.amount_minor > k;
        if ((d.outcome == Outcome::kDecline) != declines || d.fired_count != (declines ? 2 : 0) ||
            d.generation != set.generation()) {
          inconsistent.fetch_add(1, std::memory_order_relaxed);
        }
        decisions.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int k = 1; k <= kReloads; ++k) {
    store.publish(set_for(k));
    if (k % 50 == 0) {
      std::this_thread::yield();
    }
  }
  done.store(true);
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(inconsistent.load(), 0);
  EXPECT_GT(decisions.load(), 0);
  EXPECT_EQ(store.latest().version(), std::to_string(kReloads));
  // Every reader moves to the latest on its next call; then nothing old is kept.
  for (auto& r : readers) {
    EXPECT_EQ(r.current().version(), std::to_string(kReloads));
  }
  EXPECT_EQ(store.reclaim(), 0U);
}

TEST(RuleStore, AnIdleReaderKeepsTheSetItHoldsAlive) {
  RuleStore store(set_for(1));
  RuleStore::Reader reader = store.reader();
  const RuleSet& held = reader.current();
  store.publish(set_for(2));
  store.publish(set_for(3));
  EXPECT_EQ(store.reclaim(), 2U);  // the reader may still use set 1, so 1 and 2 stay
  EXPECT_EQ(held.version(), "1");  // still valid
  EXPECT_EQ(reader.current().version(), "3");
  EXPECT_EQ(store.reclaim(), 0U);
}

}  // namespace
}  // namespace authswitch::risk
