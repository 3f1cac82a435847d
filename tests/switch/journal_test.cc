// The audit journal (switch/journal.h): records from several threads reach the file as JSON
// lines, nothing is lost when the queue has room, a full queue drops and counts, and the file
// rotates by size keeping the configured number of old files.
#include "switch/journal.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <stdlib.h>

namespace authswitch::switching {
namespace {

namespace fs = std::filesystem;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "journal_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static AuditRecord record(int i) {
    AuditRecord r;
    r.time_ms = 1'795'534'200'123 + i;
    r.latency_us = 250;
    r.network = 0;
    r.mti = 100;
    r.amount_minor = 1'000 + i;
    r.currency = 840;
    r.code = {'5', '1'};
    r.set_masked_pan("476173******0119");
    r.set_reasons("available;cnp-large");
    r.set_rules_version("2026-11-24.1");
    r.rules_generation = 3;
    return r;
  }
  static std::vector<std::string> lines(const fs::path& p) {
    std::ifstream in(p);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) {
      out.push_back(l);
    }
    return out;
  }

  fs::path dir_;
};

TEST_F(JournalTest, RecordsFromSeveralThreadsBecomeJsonLines) {
  const fs::path path = dir_ / "audit.jsonl";
  constexpr int kPerThread = 5'000;
  {
    Journal j({.path = path.string(), .networks = {"acq"}});
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&j] {
        Journal::Producer p = j.producer();
        for (int i = 0; i < kPerThread; ++i) {
          while (!p.append(record(i))) {
            std::this_thread::yield();  // full: the test waits instead of dropping
          }
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
    j.stop();
    EXPECT_EQ(j.stats().written, 2U * kPerThread);
  }
  const auto all = lines(path);
  ASSERT_EQ(all.size(), 2U * kPerThread);
  const nlohmann::json first = nlohmann::json::parse(all.front());
  EXPECT_EQ(first["network"], "acq");
  EXPECT_EQ(first["mti"], "0100");
  EXPECT_EQ(first["pan"], "476173******0119");
  EXPECT_EQ(first["code"], "51");
  EXPECT_EQ(first["currency"], 840);
  EXPECT_EQ(first["reasons"], "available;cnp-large");
  EXPECT_EQ(first["latency_us"], 250);
  EXPECT_EQ(first["rules"], "2026-11-24.1");
  EXPECT_EQ(first["rules_generation"], 3);
  EXPECT_EQ(first["time"].get<std::string>().substr(0, 20), "2026-11-24T15:30:00.");
  for (const std::string& l : all) {
    ASSERT_TRUE(nlohmann::json::accept(l)) << l;
  }
}

TEST_F(JournalTest, ALineWithoutRulesHasNoRuleSet) {
  AuditRecord r = record(0);
  r.rules_generation = 0;  // no rules ran (a reversal, an advice)
  std::string line;
  append_json_line(line, r, std::vector<std::string>{"acq"});
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_FALSE(j.contains("rules")) << line;
  EXPECT_FALSE(j.contains("rules_generation")) << line;
  // A version longer than the record keeps is cut, never overruns.
  r = record(0);
  r.set_rules_version(std::string(100, 'v'));
  line.clear();
  append_json_line(line, r, std::vector<std::string>{"acq"});
  EXPECT_EQ(nlohmann::json::parse(line)["rules"], std::string(r.rules_version.size(), 'v'));
}

TEST_F(JournalTest, AFullQueueDropsAndCounts) {
  const fs::path path = dir_ / "audit.jsonl";
  Journal j({.path = path.string(), .queue_capacity = 64, .networks = {"acq"}});
  Journal::Producer p = j.producer();
  std::uint64_t accepted = 0;
  for (int i = 0; i < 200'000; ++i) {
    accepted += p.append(record(i)) ? 1U : 0U;
  }
  j.stop();
  const Journal::Stats s = j.stats();
  EXPECT_EQ(s.written, accepted);
  EXPECT_EQ(s.written + s.dropped, 200'000U);
  EXPECT_EQ(lines(path).size(), accepted);
}

TEST_F(JournalTest, RotatesBySizeAndKeepsTheNewestFiles) {
  const fs::path path = dir_ / "audit.jsonl";
  {
    Journal j({.path = path.string(),
               .rotate_bytes = 4'096,
               .rotated_files_max = 3,
               .networks = {"acq"}});
    Journal::Producer p = j.producer();
    for (int i = 0; i < 2'000; ++i) {
      while (!p.append(record(i))) {
        std::this_thread::yield();
      }
      if (i % 50 == 49) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // several batches
      }
    }
    j.stop();
    EXPECT_GT(j.stats().rotations, 3U);
  }
  EXPECT_TRUE(fs::exists(path));
  EXPECT_TRUE(fs::exists(dir_ / "audit.jsonl.1"));
  EXPECT_TRUE(fs::exists(dir_ / "audit.jsonl.3"));
  EXPECT_FALSE(fs::exists(dir_ / "audit.jsonl.4"));
}

}  // namespace
}  // namespace authswitch::switching
