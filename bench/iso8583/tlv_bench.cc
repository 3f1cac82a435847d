// BER-TLV (DE 55) benchmarks: walking, finding and encoding chip data. The block is vector v14
// (tests/data/vectors/v14_visa_de55_icc_tlv.json): 27 objects, 181 bytes. Nothing here
// allocates per iteration; the block is decoded from hex once, before timing.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <benchmark/benchmark.h>

#include "iso8583/tlv.h"

namespace {

using authswitch::iso8583::find_tlv;
using authswitch::iso8583::TlvObject;
using authswitch::iso8583::TlvReader;
using authswitch::iso8583::TlvWriter;
using authswitch::iso8583::validate_tlv;

constexpr std::string_view kV14Hex =
    "5f2a02097857134761739001010135d22122011955945800000f5f280208405f3401018202180084"
    "07a0000000031010950580800080009a032211119b0268009c01009f02060000000001289f080200"
    "969f0902008c9f100706010a03a0d8009f1a0203569f1e0845303239363935319f21031039389f26"
    "0886ba748bcada61049f2701809f3303e0f0c89f34035e00009f3501229f3602040f9f37043b391e"
    "1d9f4005f000f0a0019f4104000000059f42020840";
constexpr std::size_t kV14Size = kV14Hex.size() / 2;
static_assert(kV14Size == 181);

constexpr std::byte hex_byte(char hi, char lo) {
  const auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  return static_cast<std::byte>(nibble(hi) * 16 + nibble(lo));
}

constexpr std::array<std::byte, kV14Size> make_v14() {
  std::array<std::byte, kV14Size> out{};
  for (std::size_t i = 0; i < kV14Size; ++i) {
    out[i] = hex_byte(kV14Hex[2 * i], kV14Hex[2 * i + 1]);
  }
  return out;
}

constexpr std::array<std::byte, kV14Size> kV14 = make_v14();

// NOLINTNEXTLINE(readability-identifier-naming): Google Benchmark naming (STYLE.md).
void BM_TlvWalk(benchmark::State& state) {
  const std::span<const std::byte> block(kV14);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    TlvReader reader(block);
    TlvObject object;
    std::size_t count = 0;
    for (;;) {
      const auto got = reader.next(object);
      if (!got || !*got) {
        break;
      }
      ++count;
    }
    benchmark::DoNotOptimize(count);
    if (count != 27) {
      state.SkipWithError("v14 must walk into 27 objects");
      break;
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kV14Size));
  state.SetItemsProcessed(state.iterations() * 27);
}
BENCHMARK(BM_TlvWalk);

// NOLINTNEXTLINE(readability-identifier-naming): Google Benchmark naming (STYLE.md).
void BM_TlvValidate(benchmark::State& state) {
  const std::span<const std::byte> block(kV14);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    const auto result = validate_tlv(block, 55);
    benchmark::DoNotOptimize(result);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kV14Size));
}
BENCHMARK(BM_TlvValidate);

// 9F37 (unpredictable number) is the 24th of 27 objects, so the search scans most of the block.
// NOLINTNEXTLINE(readability-identifier-naming): Google Benchmark naming (STYLE.md).
void BM_TlvFind(benchmark::State& state) {
  const std::span<const std::byte> block(kV14);
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    const auto found = find_tlv(block, 0x9F37);
    if (!found || !found->has_value()) {
      state.SkipWithError("9F37 not found");
      break;
    }
    benchmark::DoNotOptimize((*found)->value.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(kV14Size));
}
BENCHMARK(BM_TlvFind);

// Ten objects a terminal typically sends in an authorisation request.
// NOLINTNEXTLINE(readability-identifier-naming): Google Benchmark naming (STYLE.md).
void BM_TlvEncode(benchmark::State& state) {
  static constexpr std::array<std::byte, 6> kAmount{std::byte{0x00}, std::byte{0x00},
                                                    std::byte{0x00}, std::byte{0x00},
                                                    std::byte{0x01}, std::byte{0x28}};
  static constexpr std::array<std::byte, 8> kCryptogram{
      std::byte{0x86}, std::byte{0xBA}, std::byte{0x74}, std::byte{0x8B},
      std::byte{0xCA}, std::byte{0xDA}, std::byte{0x61}, std::byte{0x04}};
  static constexpr std::array<std::byte, 5> kTvr{std::byte{0x80}, std::byte{0x80}, std::byte{0x00},
                                                 std::byte{0x80}, std::byte{0x00}};
  static constexpr std::array<std::byte, 4> kUnpredictable{std::byte{0x3B}, std::byte{0x39},
                                                           std::byte{0x1E}, std::byte{0x1D}};
  static constexpr std::array<std::byte, 3> kDate{std::byte{0x22}, std::byte{0x11},
                                                  std::byte{0x11}};
  static constexpr std::array<std::byte, 2> kCurrency{std::byte{0x09}, std::byte{0x78}};
  static constexpr std::array<std::byte, 2> kAip{std::byte{0x18}, std::byte{0x00}};
  static constexpr std::array<std::byte, 2> kAtc{std::byte{0x04}, std::byte{0x0F}};
  static constexpr std::array<std::byte, 1> kType{std::byte{0x00}};

  std::array<std::byte, 256> out{};
  std::size_t encoded = 0;
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    TlvWriter writer(out);
    writer.append(0x9F02, kAmount);
    writer.append(0x9F03, kAmount);
    writer.append(0x9F26, kCryptogram);
    writer.append(0x95, kTvr);
    writer.append(0x9F37, kUnpredictable);
    writer.append(0x9A, kDate);
    writer.append(0x5F2A, kCurrency);
    writer.append(0x82, kAip);
    writer.append(0x9F36, kAtc);
    writer.append(0x9C, kType);
    const auto size = writer.finish();
    if (!size) {
      state.SkipWithError("encode failed");
      break;
    }
    encoded = *size;
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(encoded));
  state.counters["block_bytes"] = static_cast<double>(encoded);
}
BENCHMARK(BM_TlvEncode);

}  // namespace
