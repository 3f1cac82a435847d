// PAN tokens and masking (DESIGN.md section 5): the HMAC-SHA256 primitive against RFC 4231,
// golden tokens (stored Redis keys depend on them never changing), validation, masking, key
// loading errors that never show key material, and what one tokenize costs in allocations.

#include "limits/pan_token.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "limits/pan_token_internal.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/openssl_alloc_counter.h"

namespace authswitch::limits {
namespace {

// Test card numbers from card networks' published test ranges, not real cards.
constexpr std::string_view kVisaTestPan = "4111111111111111";
constexpr std::string_view kMastercardTestPan = "5500000000000004";
// A 32-byte key: the bytes 00 01 .. 1f.
constexpr std::string_view kKeyHex =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr std::string_view kOtherKeyHex =
    "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  std::string out;
  for (const std::byte b : bytes) {
    out.push_back(kDigits[static_cast<unsigned>(b) >> 4U]);
    out.push_back(kDigits[static_cast<unsigned>(b) & 0x0FU]);
  }
  return out;
}

std::vector<std::byte> repeated(std::uint8_t value, std::size_t count) {
  std::vector<std::byte> out(count, static_cast<std::byte>(value));
  return out;
}

std::vector<std::byte> text_bytes(std::string_view s) {
  const auto bytes = std::as_bytes(std::span<const char>(s.data(), s.size()));
  return {bytes.begin(), bytes.end()};
}

TokenKey test_key(std::string_view hex = kKeyHex) { return TokenKey::from_hex(hex, "test key"); }

// A file in a fresh temporary folder, removed with it.
class TempDir {
 public:
  TempDir() {
    std::string path = std::filesystem::temp_directory_path().string() + "/authswitch-key-XXXXXX";
    if (::mkdtemp(path.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = path;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&&) = delete;
  TempDir& operator=(TempDir&&) = delete;

  [[nodiscard]] std::string write(const std::string& name, std::string_view content) const {
    std::string path = path_ + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << content;
    return path;
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// What a startup loader throws, as text; empty if it did not throw.
template <typename F>
std::string thrown_message(F&& load) {
  try {
    (void)load();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

// True if `message` shows any 8 consecutive characters of `key_hex` (either case).
bool shows_key_material(std::string_view message, std::string_view key_hex) {
  std::string lower(message);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'F') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  for (std::size_t i = 0; i + 8 <= key_hex.size(); ++i) {
    std::string piece(key_hex.substr(i, 8));
    for (char& c : piece) {
      if (c >= 'A' && c <= 'F') {
        c = static_cast<char>(c - 'A' + 'a');
      }
    }
    if (lower.find(piece) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// --- The primitive: RFC 4231 section 4 test cases, through the class tokens use ------------

struct Rfc4231Case {
  const char* name;
  std::vector<std::byte> key;
  std::vector<std::byte> data;
  std::string_view hmac_sha256_hex;  // case 5 is truncated to 128 bits by the RFC
};

std::vector<Rfc4231Case> rfc4231_cases() {
  std::vector<std::byte> key4;
  for (std::uint8_t b = 0x01; b <= 0x19; ++b) {
    key4.push_back(static_cast<std::byte>(b));
  }
  return {
      {"case1", repeated(0x0b, 20), text_bytes("Hi There"),
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"case2", text_bytes("Jefe"), text_bytes("what do ya want for nothing?"),
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {"case3", repeated(0xaa, 20), repeated(0xdd, 50),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {"case4", key4, repeated(0xcd, 50),
       "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
      {"case5", repeated(0x0c, 20), text_bytes("Test With Truncation"),
       "a3b6167473100ee06e0c796c2955552b"},
      {"case6", repeated(0xaa, 131),
       text_bytes("Test Using Larger Than Block-Size Key - Hash Key First"),
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
      {"case7", repeated(0xaa, 131),
       text_bytes("This is a test using a larger than block-size key and a larger than "
                  "block-size data. The key needs to be hashed before being used by the HMAC "
                  "algorithm."),
       "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  };
}

TEST(HmacSha256Test, MatchesRfc4231TestVectors) {
  for (const Rfc4231Case& c : rfc4231_cases()) {
    internal::HmacSha256 hmac(c.key);
    // Twice on one context: the second call takes the re-initialisation path tokenize uses.
    for (int round = 0; round < 2; ++round) {
      std::array<std::byte, internal::HmacSha256::kMacBytes> mac{};
      ASSERT_TRUE(hmac.compute(c.data, mac)) << c.name;
      const std::string hex = to_hex(mac);
      EXPECT_EQ(hex.substr(0, c.hmac_sha256_hex.size()), c.hmac_sha256_hex)
          << c.name << " round " << round;
    }
  }
}

TEST(HmacSha256Test, InterleavedInputsOnOneContextDoNotLeakState) {
  const std::vector<Rfc4231Case> cases = rfc4231_cases();
  internal::HmacSha256 hmac(cases[2].key);
  std::array<std::byte, internal::HmacSha256::kMacBytes> mac{};
  ASSERT_TRUE(hmac.compute(repeated(0x00, 1000), mac));
  ASSERT_TRUE(hmac.compute({}, mac));
  ASSERT_TRUE(hmac.compute(cases[2].data, mac));
  EXPECT_EQ(to_hex(mac), cases[2].hmac_sha256_hex);
}

// --- Tokens --------------------------------------------------------------------------------

// Tokens name Redis keys: if one of these changes, every stored card becomes unreachable.
// Values from `printf %s PAN | openssl dgst -sha256 -mac HMAC -macopt hexkey:KEY`, first 32
// hex digits.
TEST(PanTokenTest, GoldenTokensAreTheHmacPrefixInLowercaseHex) {
  SoftwareCardCrypto crypto(test_key());
  const auto visa = crypto.tokenize(kVisaTestPan);
  ASSERT_TRUE(visa.has_value());
  EXPECT_EQ(visa->view(), "0622241201382a45912fb22828b3f7db");
  const auto mastercard = crypto.tokenize(kMastercardTestPan);
  ASSERT_TRUE(mastercard.has_value());
  EXPECT_EQ(mastercard->view(), "01125baa1c7375fa4a44708a9e393dfb");
}

TEST(PanTokenTest, MatchesOpenSslOneShotHmacForManyPans) {
  const TokenKey key = test_key();
  SoftwareCardCrypto crypto(key);
  for (std::size_t length = kPanDigitsMin; length <= kPanDigitsMax; ++length) {
    for (int variant = 0; variant < 10; ++variant) {
      std::string pan(length, '0');
      for (std::size_t i = 0; i < length; ++i) {
        pan[i] = static_cast<char>('0' + (i * 7 + static_cast<std::size_t>(variant) * 3) % 10);
      }
      std::array<unsigned char, EVP_MAX_MD_SIZE> expected{};
      std::size_t expected_size = 0;
      ASSERT_NE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.bytes().data(),
                          key.bytes().size(), reinterpret_cast<const unsigned char*>(pan.data()),
                          pan.size(), expected.data(), expected.size(), &expected_size),
                nullptr);
      ASSERT_EQ(expected_size, PanToken::kMacBytes);
      const auto token = crypto.tokenize(pan);
      ASSERT_TRUE(token.has_value()) << "length " << length;
      EXPECT_EQ(token->view(),
                to_hex(std::as_bytes(std::span(expected.data(), PanToken::kTokenBytes))));
    }
  }
}

TEST(PanTokenTest, IsDeterministicAcrossCallsAndInstances) {
  SoftwareCardCrypto first(test_key());
  SoftwareCardCrypto second(test_key());
  const auto a = first.tokenize(kVisaTestPan);
  const auto b = first.tokenize(kVisaTestPan);
  const auto c = second.tokenize(kVisaTestPan);
  ASSERT_TRUE(a.has_value() && b.has_value() && c.has_value());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(*a, *c);
}

TEST(PanTokenTest, KeyMayBeDroppedAfterConstruction) {
  std::unique_ptr<SoftwareCardCrypto> crypto;
  {
    const TokenKey key = test_key();
    crypto = std::make_unique<SoftwareCardCrypto>(key);
  }
  const auto token = crypto->tokenize(kVisaTestPan);
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->view(), "0622241201382a45912fb22828b3f7db");
}

TEST(PanTokenTest, DifferentKeysGiveDifferentTokens) {
  SoftwareCardCrypto one(test_key(kKeyHex));
  SoftwareCardCrypto other(test_key(kOtherKeyHex));
  const auto a = one.tokenize(kVisaTestPan);
  const auto b = other.tokenize(kVisaTestPan);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_NE(*a, *b);
}

TEST(PanTokenTest, NearbyPansGiveDistinctTokensThatNeverContainThePan) {
  SoftwareCardCrypto crypto(test_key());
  std::set<std::string> tokens;
  // 4000 PANs of a single BIN that differ only in their last digits, plus prefixes of one.
  std::vector<std::string> pans;
  for (int i = 0; i < 4000; ++i) {
    std::string pan = "400000000000" + std::to_string(1000 + i);
    pans.push_back(pan);
  }
  for (std::size_t length = kPanDigitsMin; length <= kPanDigitsMax; ++length) {
    pans.push_back(std::string("4111111111111111111").substr(0, length));
  }
  for (const std::string& pan : pans) {
    const auto token = crypto.tokenize(pan);
    ASSERT_TRUE(token.has_value());
    const std::string_view text = token->view();
    ASSERT_EQ(text.size(), PanToken::kChars);
    EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), std::string_view::npos);
    // Sanity: the clear PAN (and its last 8 digits) never shows through.
    EXPECT_EQ(text.find(pan), std::string_view::npos);
    EXPECT_EQ(text.find(std::string_view(pan).substr(pan.size() - 8)), std::string_view::npos);
    tokens.emplace(text);
  }
  EXPECT_EQ(tokens.size(), pans.size());
}

TEST(PanTokenTest, BadPansAreRejectedWithoutCarryingThePan) {
  // The error type is a one-byte code: there is no room for card data in an error.
  static_assert(sizeof(CardDataErrc) == 1);
  SoftwareCardCrypto crypto(test_key());
  struct Case {
    std::string_view pan;
    CardDataErrc expected;
  };
  const std::string with_nul(
      "411111111111\0"
      "1111",
      17);
  const std::vector<Case> cases = {
      {"", CardDataErrc::kPanTooShort},
      {"41111111111", CardDataErrc::kPanTooShort},            // 11 digits
      {"41111111111111111111", CardDataErrc::kPanTooLong},    // 20 digits
      {"4111 1111 1111 1111", CardDataErrc::kPanNotNumeric},  // spaces
      {"4111-1111-1111-1111", CardDataErrc::kPanNotNumeric},  // dashes
      {"41111111111111a1", CardDataErrc::kPanNotNumeric},     // a letter
      {"\xef\xbc\x94"
       "111111111111111",
       CardDataErrc::kPanNotNumeric},  // full-width digit
      {with_nul, CardDataErrc::kPanNotNumeric},
  };
  for (const Case& c : cases) {
    const auto token = crypto.tokenize(c.pan);
    ASSERT_FALSE(token.has_value()) << "case of " << c.pan.size() << " bytes";
    EXPECT_EQ(token.error(), c.expected) << card_data_errc_name(token.error());
    const auto valid = validate_pan(c.pan);
    ASSERT_FALSE(valid.has_value());
    EXPECT_EQ(valid.error(), c.expected);
  }
  EXPECT_TRUE(crypto.tokenize("123456789012").has_value());         // 12: shortest
  EXPECT_TRUE(crypto.tokenize("1234567890123456789").has_value());  // 19: longest
}

TEST(PanTokenTest, ErrorNamesAreStable) {
  EXPECT_EQ(card_data_errc_name(CardDataErrc::kOk), "ok");
  EXPECT_EQ(card_data_errc_name(CardDataErrc::kPanTooShort), "pan-too-short");
  EXPECT_EQ(card_data_errc_name(CardDataErrc::kPanTooLong), "pan-too-long");
  EXPECT_EQ(card_data_errc_name(CardDataErrc::kPanNotNumeric), "pan-not-numeric");
  EXPECT_EQ(card_data_errc_name(CardDataErrc::kBufferTooSmall), "buffer-too-small");
  EXPECT_EQ(card_data_errc_name(CardDataErrc::kCryptoFailure), "crypto-failure");
}

TEST(PanTokenTest, ValueTypeBasics) {
  const PanToken placeholder;
  EXPECT_EQ(placeholder.view(), std::string(PanToken::kChars, '0'));
  std::array<std::byte, PanToken::kMacBytes> mac{};
  for (std::size_t i = 0; i < mac.size(); ++i) {
    mac[i] = static_cast<std::byte>(0xf0 + i);  // wraps to 0x00.. after 0xff
  }
  const PanToken token = PanToken::from_mac(mac);
  EXPECT_EQ(token.view(), "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");  // first 16 bytes only
  EXPECT_EQ(token, PanToken::from_mac(mac));
  EXPECT_NE(token, placeholder);
}

// The interface an HSM would implement is usable through a base reference.
TEST(PanTokenTest, WorksThroughTheCardDataCryptoInterface) {
  SoftwareCardCrypto software(test_key());
  CardDataCrypto& crypto = software;
  const auto token = crypto.tokenize(kVisaTestPan);
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->view(), "0622241201382a45912fb22828b3f7db");
}

// --- Masking -------------------------------------------------------------------------------

TEST(MaskPanTest, ShowsFirstSixAndLastFour) {
  std::array<char, kPanDigitsMax> out{};
  const auto sixteen = mask_pan(kVisaTestPan, out);
  ASSERT_TRUE(sixteen.has_value());
  EXPECT_EQ(*sixteen, "411111******1111");
  const auto twelve = mask_pan("123456789012", out);
  ASSERT_TRUE(twelve.has_value());
  EXPECT_EQ(*twelve, "123456**9012");
  const auto nineteen = mask_pan("1234567890123456789", out);
  ASSERT_TRUE(nineteen.has_value());
  EXPECT_EQ(*nineteen, "123456*********6789");
}

TEST(MaskPanTest, NeedsRoomForThePanOnly) {
  std::array<char, 16> exact{};
  const auto masked = mask_pan(kVisaTestPan, exact);
  ASSERT_TRUE(masked.has_value());
  EXPECT_EQ(masked->data(), exact.data());
  std::array<char, 15> small{};
  const auto too_small = mask_pan(kVisaTestPan, small);
  ASSERT_FALSE(too_small.has_value());
  EXPECT_EQ(too_small.error(), CardDataErrc::kBufferTooSmall);
}

TEST(MaskPanTest, RejectsMalformedPansWithoutWritingAnything) {
  std::array<char, 32> out{};
  out.fill('#');
  for (const std::string_view pan :
       {std::string_view("4111 1111 1111 1111"), std::string_view("41111111111"),
        std::string_view("411111111111111111111111")}) {
    const auto masked = mask_pan(pan, out);
    EXPECT_FALSE(masked.has_value());
  }
  EXPECT_EQ(std::string_view(out.data(), out.size()), std::string(out.size(), '#'));
}

// --- Keys ----------------------------------------------------------------------------------

TEST(TokenKeyTest, ParsesHexInEitherCaseWithSurroundingWhitespace) {
  const TokenKey lower = TokenKey::from_hex(kKeyHex, "test");
  const TokenKey upper = TokenKey::from_hex(
      "  000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\r\n", "test");
  ASSERT_EQ(lower.bytes().size(), 32U);
  EXPECT_EQ(to_hex(lower.bytes()), kKeyHex);
  EXPECT_EQ(to_hex(upper.bytes()), kKeyHex);
  const TokenKey longest = TokenKey::from_hex(std::string(128, 'a'), "test");
  EXPECT_EQ(longest.bytes().size(), TokenKey::kBytesMax);
}

TEST(TokenKeyTest, BadHexIsRejectedWithoutShowingTheKey) {
  struct Case {
    std::string hex;
    std::string_view expected_in_message;
  };
  const std::string short_key(kKeyHex.substr(0, 62));  // 31 bytes
  std::string bad_digit(kKeyHex);
  bad_digit[40] = 'g';
  const std::vector<Case> cases = {
      {"", "empty"},
      {" \n", "empty"},
      {short_key, "62 characters"},
      {std::string(kKeyHex) + "0", "65 characters"},  // odd
      {std::string(130, 'a'), "130 characters"},      // 65 bytes
      {bad_digit, "character 41 of 64 is not a hex digit"},
      {"0x" + std::string(kKeyHex.substr(2)), "character 2 of 64"},
  };
  for (const Case& c : cases) {
    const std::string message =
        thrown_message([&] { return TokenKey::from_hex(c.hex, "environment variable X"); });
    EXPECT_NE(message.find("environment variable X"), std::string::npos) << message;
    EXPECT_NE(message.find(c.expected_in_message), std::string::npos) << message;
    EXPECT_FALSE(shows_key_material(message, c.hex)) << message;
  }
}

TEST(TokenKeyTest, ByteConstructorChecksTheSize) {
  const std::vector<std::byte> short_key = repeated(0x11, TokenKey::kBytesMin - 1);
  const std::vector<std::byte> long_key = repeated(0x11, TokenKey::kBytesMax + 1);
  EXPECT_THROW(TokenKey{short_key}, std::runtime_error);
  EXPECT_THROW(TokenKey{long_key}, std::runtime_error);
  const TokenKey ok(repeated(0x11, TokenKey::kBytesMin));
  EXPECT_EQ(ok.bytes().size(), TokenKey::kBytesMin);
}

TEST(TokenKeyTest, MovingTransfersTheKeyAndEmptiesTheSource) {
  TokenKey source = test_key();
  const TokenKey moved(std::move(source));
  EXPECT_EQ(to_hex(moved.bytes()), kKeyHex);
  // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move): the contract
  EXPECT_TRUE(source.bytes().empty());
  TokenKey assigned = test_key(kOtherKeyHex);
  TokenKey again = test_key();
  assigned = std::move(again);
  EXPECT_EQ(to_hex(assigned.bytes()), kKeyHex);
  // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move): the contract
  EXPECT_TRUE(again.bytes().empty());
}

TEST(TokenKeyFileTest, LoadsAHexKeyFile) {
  const TempDir dir;
  const std::string path = dir.write("pan-token.key", std::string(kKeyHex) + "\n");
  const TokenKey key = load_token_key(path);
  EXPECT_EQ(to_hex(key.bytes()), kKeyHex);
  SoftwareCardCrypto crypto(key);
  const auto token = crypto.tokenize(kVisaTestPan);
  ASSERT_TRUE(token.has_value());
  EXPECT_EQ(token->view(), "0622241201382a45912fb22828b3f7db");
}

TEST(TokenKeyFileTest, MissingFileNamesThePathAndTheReason) {
  const TempDir dir;
  const std::string path = dir.path() + "/absent.key";
  const std::string message = thrown_message([&] { return load_token_key(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
}

TEST(TokenKeyFileTest, DirectoryIsNotAKeyFile) {
  const TempDir dir;
  const std::string message = thrown_message([&] { return load_token_key(dir.path()); });
  EXPECT_NE(message.find("not a regular file"), std::string::npos) << message;
}

TEST(TokenKeyFileTest, ShortOrBadKeyFilesNeverShowTheirContent) {
  const TempDir dir;
  const std::string short_hex(kKeyHex.substr(0, 40));  // 20 bytes
  std::string bad_hex(kOtherKeyHex);
  bad_hex[63] = 'z';
  const std::string large(2048, 'a');
  for (const auto& [name, content, expected] :
       {std::tuple<std::string, std::string, std::string>{"short.key", short_hex, "40 characters"},
        {"bad.key", bad_hex, "character 64 of 64 is not a hex digit"},
        {"large.key", large, "larger than 1024 bytes"},
        {"empty.key", "", "empty"}}) {
    const std::string path = dir.write(name, content);
    const std::string message = thrown_message([&] { return load_token_key(path); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(expected), std::string::npos) << message;
    EXPECT_FALSE(shows_key_material(message, content)) << message;
  }
}

TEST(TokenKeyEnvTest, LoadsFromTheEnvironmentAndNamesTheVariableOnErrors) {
  constexpr const char* kVariable = "AS_PAN_TOKEN_KEY_HEX_FOR_TEST";
  // Single-threaded test; the variable name is private to it.
  ::unsetenv(kVariable);  // NOLINT(concurrency-mt-unsafe)
  const std::string unset = thrown_message([&] { return load_token_key_from_env(kVariable); });
  EXPECT_NE(unset.find(kVariable), std::string::npos) << unset;
  EXPECT_NE(unset.find("is not set"), std::string::npos) << unset;

  const std::string short_hex(kOtherKeyHex.substr(0, 48));
  ::setenv(kVariable, short_hex.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  const std::string bad = thrown_message([&] { return load_token_key_from_env(kVariable); });
  EXPECT_NE(bad.find(kVariable), std::string::npos) << bad;
  EXPECT_FALSE(shows_key_material(bad, short_hex)) << bad;

  ::setenv(kVariable, std::string(kKeyHex).c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  const TokenKey key = load_token_key_from_env(kVariable);
  EXPECT_EQ(to_hex(key.bytes()), kKeyHex);
  ::unsetenv(kVariable);  // NOLINT(concurrency-mt-unsafe)
  EXPECT_STREQ(kTokenKeyEnvVar, "AS_PAN_TOKEN_KEY_HEX");
}

// --- Allocation cost (STYLE.md, Memory) ----------------------------------------------------

constexpr int kWarmupCalls = 16;
constexpr int kMeasuredCalls = 1000;
// OpenSSL 3.0.x duplicates the SHA-256 provider context when an HMAC is re-initialised and when
// it is finalised (see SoftwareCardCrypto in limits/pan_token.h): 2 mallocs and 2 frees a call.
// A newer OpenSSL may need fewer; more would be a regression.
constexpr std::uint64_t kOpenSslAllocationsPerTokenizeMax = 2;

TEST(PanTokenAllocTest, TokenizeNeverCallsOperatorNewAndBoundsOpenSslMallocs) {
  ASSERT_TRUE(support::openssl_alloc_counter_installed())
      << "OpenSSL allocated before the counting hooks were installed";
  SoftwareCardCrypto crypto(test_key());
  std::array<std::string, 4> pans = {std::string(kVisaTestPan), std::string(kMastercardTestPan),
                                     "123456789012", "1234567890123456789"};
  std::size_t checksum = 0;
  for (int i = 0; i < kWarmupCalls; ++i) {
    const auto token = crypto.tokenize(pans[static_cast<std::size_t>(i) % pans.size()]);
    ASSERT_TRUE(token.has_value());
  }
  const support::AllocSnapshot before = support::alloc_snapshot();
  const support::OpenSslAllocSnapshot openssl_before = support::openssl_alloc_snapshot();
  std::size_t failures = 0;
  for (int i = 0; i < kMeasuredCalls; ++i) {
    const auto token = crypto.tokenize(pans[static_cast<std::size_t>(i) % pans.size()]);
    if (!token.has_value()) {
      ++failures;
      continue;
    }
    checksum += static_cast<unsigned char>(token->view()[0]);
  }
  const support::AllocSnapshot after = support::alloc_snapshot();
  const support::OpenSslAllocSnapshot openssl_after = support::openssl_alloc_snapshot();

  EXPECT_EQ(failures, 0U);
  EXPECT_GT(checksum, 0U);
  EXPECT_EQ(after.allocations - before.allocations, 0U) << "operator new per tokenize";

  const std::uint64_t openssl_allocations = openssl_after.allocations - openssl_before.allocations;
  const std::uint64_t openssl_frees = openssl_after.frees - openssl_before.frees;
  EXPECT_LE(openssl_allocations, kOpenSslAllocationsPerTokenizeMax * kMeasuredCalls);
  EXPECT_EQ(openssl_frees, openssl_allocations) << "OpenSSL memory must not grow per call";
  RecordProperty("openssl_allocations_per_tokenize",
                 std::to_string(static_cast<double>(openssl_allocations) / kMeasuredCalls));

  RecordProperty("jemalloc_counter", support::jemalloc_counter_available() ? "yes" : "no");
  if (support::jemalloc_counter_available()) {
    // jemalloc sees every malloc on this thread: nothing but OpenSSL's documented ones.
    EXPECT_EQ(after.jemalloc_bytes - before.jemalloc_bytes,
              openssl_after.usable_bytes - openssl_before.usable_bytes);
  }
}

TEST(PanTokenAllocTest, ValidateAndMaskAllocateNothing) {
  std::array<char, kPanDigitsMax> out{};
  std::size_t shown = 0;
  const support::AllocSnapshot before = support::alloc_snapshot();
  const support::OpenSslAllocSnapshot openssl_before = support::openssl_alloc_snapshot();
  for (int i = 0; i < kMeasuredCalls; ++i) {
    if (validate_pan(kVisaTestPan).has_value()) {
      const auto masked = mask_pan(kVisaTestPan, out);
      shown += masked.has_value() ? masked->size() : 0;
    }
  }
  const support::AllocSnapshot after = support::alloc_snapshot();
  EXPECT_EQ(shown, 16U * kMeasuredCalls);
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.jemalloc_bytes, before.jemalloc_bytes);
  EXPECT_EQ(support::openssl_alloc_snapshot().allocations, openssl_before.allocations);
}

}  // namespace
}  // namespace authswitch::limits
