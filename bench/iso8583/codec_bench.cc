// Message codec benchmarks, per shipped dialect: decode with full validation, measure (the
// unframed length scan), encode (fill a builder and encode, as the switch does per message;
// and encode alone), build the 0110/1110 response, and the whole per-message codec cost
// (decode + response + encode).
//
// The message is a typical chip-card authorisation request built once per dialect with
// MessageBuilder: 20 fields (DE 2, 3, 4, 7, 11, 12, 13, 14, 18, 19, 22, 25, 32, 35, 37, 41, 42,
// 43, 49 and a 39-byte BER-TLV DE 55); ISO 8583:1993 has DE 12 n12, DE 22 an12 and DE 24
// (function code) instead of DE 25, and answers with a 3-digit DE 39. Its size depends on the
// encoding (about 190-310 bytes) and is reported as the counter `msg_bytes`.
//
// Counters: items/s (messages), bytes/s (request bytes), allocs_per_op (calls to operator new
// per iteration, from bench/alloc_counter.h), jemalloc_bytes_per_op when jemalloc is linked.
// Benchmarks are named BM_<Op>/<dialect> with '_' for '-', e.g. BM_Decode/iso87_ascii.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

#include "base/assert.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/sample_messages.h"

namespace authswitch::iso8583 {
namespace {

constexpr std::array<std::string_view, 4> kDialectNames = {"iso87-ascii", "iso87-ascii-binbitmap",
                                                           "iso87-bcd", "iso93-ebcdic"};

constexpr std::size_t kOutBytes = 8192;

using support::fill_sample_request;

// One dialect's request, encoded once before any timing.
struct Sample {
  const Dialect* dialect = nullptr;
  bool iso93 = false;
  std::vector<std::byte> wire;
  int fields = 0;
  std::string_view response_code;
};

Sample make_sample(std::string_view name) {
  Sample s;
  s.dialect = &builtin_dialect(name);
  s.iso93 = s.dialect->field(39).max_units == 3;
  s.response_code = s.iso93 ? "000" : "00";
  MessageBuilder b(*s.dialect);
  fill_sample_request(b, s.iso93);
  std::array<std::byte, kOutBytes> out{};
  const auto n = b.encode(out);
  AS_ASSERT(n.has_value());
  s.wire.assign(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(*n));
  MessageView view;
  AS_ASSERT(decode(*s.dialect, s.wire, view).has_value());
  for (int de = 2; de <= kMaxField; ++de) {
    s.fields += view.has(de) ? 1 : 0;
  }
  return s;
}

const Sample& sample(std::size_t index) {
  static const std::array<Sample, kDialectNames.size()> kSamples = [] {
    std::array<Sample, kDialectNames.size()> all;
    for (std::size_t i = 0; i < kDialectNames.size(); ++i) {
      all[i] = make_sample(kDialectNames[i]);
    }
    return all;
  }();
  return kSamples[index];
}

// Sets the common counters. Allocation counts are differences across the timed loop.
void report(benchmark::State& state, const Sample& s, const support::AllocSnapshot& before) {
  const support::AllocSnapshot after = support::alloc_snapshot();
  const auto iterations = static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(s.wire.size()));
  state.counters["msg_bytes"] = static_cast<double>(s.wire.size());
  state.counters["fields"] = s.fields;
  state.counters["allocs_per_op"] =
      static_cast<double>(after.allocations - before.allocations) / iterations;
  if (support::jemalloc_counter_available()) {
    state.counters["jemalloc_bytes_per_op"] =
        static_cast<double>(after.jemalloc_bytes - before.jemalloc_bytes) / iterations;
  }
}

void BM_Decode(benchmark::State& state, std::size_t index) {
  const Sample& s = sample(index);
  MessageView view;
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    const auto r = decode(*s.dialect, s.wire, view);
    benchmark::DoNotOptimize(r);
    if (!r) {
      state.SkipWithError("decode failed");
      break;
    }
  }
  benchmark::DoNotOptimize(view.bitmap_words());
  report(state, s, before);
}

void BM_Measure(benchmark::State& state, std::size_t index) {
  const Sample& s = sample(index);
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    const auto r = measure(*s.dialect, s.wire);
    benchmark::DoNotOptimize(r);
    if (!r || *r != s.wire.size()) {
      state.SkipWithError("measure failed");
      break;
    }
  }
  report(state, s, before);
}

// Fill + encode: what building one outgoing request costs.
void BM_Encode(benchmark::State& state, std::size_t index) {
  const Sample& s = sample(index);
  MessageBuilder b(*s.dialect);
  std::array<std::byte, kOutBytes> out{};
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    fill_sample_request(b, s.iso93);
    const auto n = b.encode(out);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(out.data());
    if (!n || *n != s.wire.size()) {
      state.SkipWithError("encode failed");
      break;
    }
  }
  report(state, s, before);
}

// Encode alone, from a builder filled before timing.
void BM_EncodeOnly(benchmark::State& state, std::size_t index) {
  const Sample& s = sample(index);
  MessageBuilder b(*s.dialect);
  fill_sample_request(b, s.iso93);
  std::array<std::byte, kOutBytes> out{};
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    const auto n = b.encode(out);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(out.data());
    if (!n || *n != s.wire.size()) {
      state.SkipWithError("encode failed");
      break;
    }
  }
  report(state, s, before);
}

// build_response + encode of the 0110/1110 for a request decoded before timing.
void BM_BuildResponse(benchmark::State& state, std::size_t index) {
  const Sample& s = sample(index);
  MessageView request;
  AS_ASSERT(decode(*s.dialect, s.wire, request).has_value());
  MessageBuilder b(*s.dialect);
  std::array<std::byte, kOutBytes> out{};
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    const auto built = build_response(request, s.response_code, "A1B2C3", b);
    const auto n = b.encode(out);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(out.data());
    if (!built || !n) {
      state.SkipWithError("response failed");
      break;
    }
  }
  report(state, s, before);
}

// The per-message codec cost of an authorisation: decode the request, build and encode the
// response.
void BM_DecodeAndRespond(benchmark::State& state, std::size_t index) {
  const Sample& s = sample(index);
  MessageView request;
  MessageBuilder b(*s.dialect);
  std::array<std::byte, kOutBytes> out{};
  const support::AllocSnapshot before = support::alloc_snapshot();
  for (auto _ : state) {
    const auto r = decode(*s.dialect, s.wire, request);
    const auto built = build_response(request, s.response_code, "A1B2C3", b);
    const auto n = b.encode(out);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(out.data());
    if (!r || !built || !n) {
      state.SkipWithError("decode and respond failed");
      break;
    }
  }
  report(state, s, before);
}

// BM_<Op>/<dialect> for every shipped dialect, the index into kDialectNames captured
// (dialect names with '_' for '-', as benchmark names must be identifiers here).
static_assert(kDialectNames.size() == 4, "one BENCHMARK_CAPTURE line per dialect below");
BENCHMARK_CAPTURE(BM_Decode, iso87_ascii, 0);
BENCHMARK_CAPTURE(BM_Decode, iso87_ascii_binbitmap, 1);
BENCHMARK_CAPTURE(BM_Decode, iso87_bcd, 2);
BENCHMARK_CAPTURE(BM_Decode, iso93_ebcdic, 3);

BENCHMARK_CAPTURE(BM_Measure, iso87_ascii, 0);
BENCHMARK_CAPTURE(BM_Measure, iso87_ascii_binbitmap, 1);
BENCHMARK_CAPTURE(BM_Measure, iso87_bcd, 2);
BENCHMARK_CAPTURE(BM_Measure, iso93_ebcdic, 3);

BENCHMARK_CAPTURE(BM_Encode, iso87_ascii, 0);
BENCHMARK_CAPTURE(BM_Encode, iso87_ascii_binbitmap, 1);
BENCHMARK_CAPTURE(BM_Encode, iso87_bcd, 2);
BENCHMARK_CAPTURE(BM_Encode, iso93_ebcdic, 3);

BENCHMARK_CAPTURE(BM_EncodeOnly, iso87_ascii, 0);
BENCHMARK_CAPTURE(BM_EncodeOnly, iso87_ascii_binbitmap, 1);
BENCHMARK_CAPTURE(BM_EncodeOnly, iso87_bcd, 2);
BENCHMARK_CAPTURE(BM_EncodeOnly, iso93_ebcdic, 3);

BENCHMARK_CAPTURE(BM_BuildResponse, iso87_ascii, 0);
BENCHMARK_CAPTURE(BM_BuildResponse, iso87_ascii_binbitmap, 1);
BENCHMARK_CAPTURE(BM_BuildResponse, iso87_bcd, 2);
BENCHMARK_CAPTURE(BM_BuildResponse, iso93_ebcdic, 3);

BENCHMARK_CAPTURE(BM_DecodeAndRespond, iso87_ascii, 0);
BENCHMARK_CAPTURE(BM_DecodeAndRespond, iso87_ascii_binbitmap, 1);
BENCHMARK_CAPTURE(BM_DecodeAndRespond, iso87_bcd, 2);
BENCHMARK_CAPTURE(BM_DecodeAndRespond, iso93_ebcdic, 3);

}  // namespace
}  // namespace authswitch::iso8583
