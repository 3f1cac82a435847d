// The iso8583 command-line tool, run as a real process: decode, encode, framing, masking and
// its exit status on bad input.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "tests/iso8583/test_util.h"

namespace authswitch::iso8583 {
namespace {

struct CliRun {
  int status = -1;
  std::string out;
  std::string err;
};

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = std::filesystem::temp_directory_path() /
           ("iso8583-cli-test-" + std::to_string(rd()) + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs the tool with `args`, feeding `input` on stdin.
  CliRun run(const std::string& args, const std::string& input) {
    const auto in = dir_ / "in";
    const auto out = dir_ / "out";
    const auto err = dir_ / "err";
    std::ofstream(in, std::ios::binary) << input;
    const std::string cmd = std::string(AS_ISO8583_CLI) + " " + args + " <" + in.string() + " >" +
                            out.string() + " 2>" + err.string();
    const int rc = std::system(cmd.c_str());  // NOLINT: test runs its own binary
    CliRun r;
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = test::read_file(out.string());
    r.err = test::read_file(err.string());
    return r;
  }

  std::filesystem::path dir_;
};

// v01 from tests/data/vectors: an all-ASCII 0200 carrying DE 2 only.
constexpr const char* kV01Hex = "3032303034303030303030303030303030303030313031323334353637383930";

TEST_F(Cli, DecodesHexToJsonInFieldOrder) {
  const CliRun r = run("decode --dialect iso87-ascii --hex", kV01Hex);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "{\"mti\":\"0200\",\"fields\":{\"2\":\"1234567890\"}}\n");
}

TEST_F(Cli, DecodesRawBytes) {
  const auto bytes = test::from_hex(kV01Hex);
  const CliRun r = run("decode --dialect iso87-ascii",
                       std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("\"2\":\"1234567890\""), std::string::npos);
}

TEST_F(Cli, EncodeThenDecodeRoundTripsEveryShippedDialect) {
  const std::string msg =
      R"({"mti":"0100","fields":{"2":"4761739001010135","3":"000000","4":"000000001234",)"
      R"("11":"000001","35":"4761739001010135=22122011955945800000","41":"TERM0001",)"
      R"("49":"978","52":"0102030405060708","55":"9f02060000000012345f340101"}})";
  for (const char* d : {"iso87-ascii", "iso87-ascii-binbitmap", "iso87-bcd", "iso93-ebcdic"}) {
    const CliRun e = run(std::string("encode --hex --dialect ") + d, msg);
    ASSERT_EQ(e.status, 0) << d << ": " << e.err;
    const CliRun back = run(std::string("decode --hex --dialect ") + d, e.out);
    ASSERT_EQ(back.status, 0) << d << ": " << back.err;
    EXPECT_EQ(nlohmann::json::parse(back.out), nlohmann::json::parse(msg)) << d;
  }
}

TEST_F(Cli, FramedMessagesDecodeOneJsonLineEach) {
  const std::string msg = R"({"mti":"0800","fields":{"7":"1124101010","11":"000001","70":"301"}})";
  const CliRun e = run("encode --hex --dialect iso87-bcd --framing len2-binary+header=5", msg);
  ASSERT_EQ(e.status, 0) << e.err;
  // The length header counts the 5-byte header and the message.
  const auto bytes = test::from_hex(e.out.substr(0, e.out.size() - 1));
  ASSERT_GE(bytes.size(), 7U);
  EXPECT_EQ(static_cast<std::size_t>(bytes[0]) * 256 + static_cast<std::size_t>(bytes[1]),
            bytes.size() - 2);
  const std::string two = e.out.substr(0, e.out.size() - 1) + e.out;
  const CliRun d = run("decode --hex --dialect iso87-bcd --framing len2-binary+header=5", two);
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_EQ(std::count(d.out.begin(), d.out.end(), '\n'), 2);
  EXPECT_NE(d.out.find("\"70\":\"301\""), std::string::npos);
}

TEST_F(Cli, MaskHidesThePanMiddleAndTrackData) {
  const std::string msg =
      R"({"mti":"0100","fields":{"2":"4761739001010135","35":"4761739001010135=2212201"}})";
  const CliRun e = run("encode --hex --dialect iso87-ascii", msg);
  ASSERT_EQ(e.status, 0) << e.err;
  const CliRun d = run("decode --hex --mask --dialect iso87-ascii", e.out);
  ASSERT_EQ(d.status, 0) << d.err;
  EXPECT_NE(d.out.find("\"2\":\"476173******0135\""), std::string::npos) << d.out;
  EXPECT_EQ(d.out.find("4761739001010135"), std::string::npos) << d.out;
  EXPECT_EQ(d.out.find("2212201"), std::string::npos) << d.out;
}

TEST_F(Cli, BadInputExitsTwoNamingFieldAndOffset) {
  // DE 2 declared 10 long but holds a letter at offset 24 of the message.
  const CliRun r = run("decode --dialect iso87-ascii --hex",
                       "30323030343030303030303030303030303030303130313233344135363738393"
                       "0");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.err, "error: field 2 at offset 26: bad-charset\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(Cli, TruncatedAndGarbageInputExitTwo) {
  EXPECT_EQ(run("decode --dialect iso87-ascii --hex", "30323030").status, 2);
  EXPECT_EQ(run("decode --dialect iso87-ascii --hex", "zz").status, 2);
  EXPECT_EQ(run("decode --dialect iso87-ascii --hex", std::string(kV01Hex) + "00").status, 2);
  EXPECT_EQ(run("encode --dialect iso87-ascii", "not json").status, 2);
  const CliRun r = run("encode --dialect iso87-ascii", R"({"mti":"0100","fields":{"4":"12A"}})");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("field 4"), std::string::npos) << r.err;
}

TEST_F(Cli, UnknownDialectIsAUsageError) {
  const CliRun r = run("decode --dialect no-such-dialect --hex", kV01Hex);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no-such-dialect"), std::string::npos);
}

TEST_F(Cli, DialectFileByPath) {
  const CliRun r = run("decode --hex --dialect " + test::data_path("dialects/v01.toml"), kV01Hex);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("1234567890"), std::string::npos);
}

TEST_F(Cli, ListsShippedDialects) {
  const CliRun r = run("dialects", "");
  ASSERT_EQ(r.status, 0);
  for (const char* d :
       {"iso87-ascii\t", "iso87-ascii-binbitmap\t", "iso87-bcd\t", "iso93-ebcdic\t"}) {
    EXPECT_NE(r.out.find(d), std::string::npos) << d;
  }
}

}  // namespace
}  // namespace authswitch::iso8583
