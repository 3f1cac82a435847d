// Proof of "zero allocations per message" (STYLE.md, Memory): after a warm-up, 1,000 messages
// per shipped dialect go through the whole per-message codec path (frame decode, message
// decode, text_value of every field, DE 55 TLV walk, response build and encode, response frame
// header) while the calling thread's allocation count must stay unchanged.
//
// Counting: tests/support/alloc_counter.cc, linked into iso8583_tests, replaces the global
// operator new/delete (every form) and counts calls on the current thread only, so other
// threads cannot disturb a reading. This works with ASan too (ASan intercepts the malloc
// underneath). When jemalloc is linked (AS_HAVE_JEMALLOC), jemalloc's per-thread byte counter
// is read as well: it also sees malloc calls that bypass operator new.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "iso8583/dialect_loader.h"
#include "iso8583/framing.h"
#include "iso8583/message.h"
#include "iso8583/spec.h"
#include "iso8583/tlv.h"
#include "tests/support/alloc_counter.h"
#include "tests/support/sample_messages.h"

namespace authswitch::iso8583 {
namespace {

constexpr int kWarmupMessages = 10;
constexpr int kMeasuredMessages = 1000;
constexpr std::size_t kBufferBytes = 8192;

constexpr std::size_t kIccObjects = support::kSampleIccObjects;

using support::thread_allocations;

std::uint64_t jemalloc_thread_allocated() noexcept {
  return support::jemalloc_thread_allocated_bytes();
}

// Everything one message needs, allocated before counting starts (as a session's slot is).
struct Session {
  explicit Session(const Dialect& d) : dialect(d), response(d) {}

  const Dialect& dialect;
  std::array<std::byte, kBufferBytes> received{};  // len2-binary framed request
  std::size_t received_bytes = 0;
  MessageView request;
  MessageBuilder response;
  std::array<std::byte, kBufferBytes> sent{};
  std::array<char, kBufferBytes> text{};
  std::array<std::byte, kBufferBytes> icc{};
};

// What one message costs; the counts let the test prove the work was really done.
struct Tally {
  std::size_t messages = 0;
  std::size_t fields = 0;
  std::size_t text_bytes = 0;
  std::size_t tlv_objects = 0;
  std::size_t response_bytes = 0;
  std::size_t failures = 0;
};

// Walks every level of a BER-TLV block; returns the number of objects, or fails the tally.
std::size_t walk_tlv(std::span<const std::byte> block, Tally& tally) noexcept {
  std::array<TlvReader, kTlvDepthMax> readers{};
  readers[0] = TlvReader(block);
  std::size_t open = 1;
  std::size_t objects = 0;
  while (open > 0) {
    TlvObject o;
    const auto got = readers[open - 1].next(o);
    if (!got) {
      ++tally.failures;
      return objects;
    }
    if (!*got) {
      --open;
      continue;
    }
    ++objects;
    if (o.constructed && open < readers.size()) {
      readers[open++] = TlvReader(o.value);
    }
  }
  return objects;
}

// The per-message path of a session: cut the frame, decode, read every field, walk DE 55,
// answer and frame the answer. No gtest macros inside: failures are counted instead.
void process_one(Session& s, const FrameDecoder& frames, const FrameDecoder& unframed,
                 std::string_view response_code, Tally& tally) noexcept {
  const std::span<const std::byte> buffered(s.received.data(), s.received_bytes);
  const FrameResult frame = frames.decode(buffered);
  if (frame.status != FrameStatus::kComplete || frame.consumed != buffered.size()) {
    ++tally.failures;
    return;
  }
  // The same bytes as an unframed stream (measure() finds the message's end).
  const FrameResult measured = unframed.decode(frame.message);
  if (measured.status != FrameStatus::kComplete || measured.consumed != frame.message.size()) {
    ++tally.failures;
  }
  if (!decode(s.dialect, frame.message, s.request)) {
    ++tally.failures;
    return;
  }
  for (int de = 2; de <= kMaxField; ++de) {
    if (!s.request.has(de)) {
      continue;
    }
    const FieldView f = s.request.field(de);
    ++tally.fields;
    tally.text_bytes += text_value(f, s.text).size();
    if (f.spec->composite == CompositeKind::kBerTlv) {
      tally.tlv_objects += walk_tlv(canonical_value(f, s.icc), tally);
    }
  }
  if (!build_response(s.request, response_code, "A1B2C3", s.response)) {
    ++tally.failures;
    return;
  }
  constexpr std::size_t kPrefixBytes = 2;  // len2-binary
  const auto n = s.response.encode(std::span(s.sent).subspan(kPrefixBytes));
  if (!n) {
    ++tally.failures;
    return;
  }
  const auto prefix = write_frame_header(frames.framing(), *n, std::span(s.sent));
  if (!prefix || *prefix != kPrefixBytes) {
    ++tally.failures;
    return;
  }
  tally.response_bytes += *n;
  ++tally.messages;
}

// Encodes the typical authorisation request (about 20 fields) into the session's receive
// buffer behind a len2-binary prefix.
void prepare_request(Session& s, bool iso93) {
  MessageBuilder b(s.dialect);
  support::fill_sample_request(b, iso93);
  const auto n = b.encode(std::span(s.received).subspan(2));
  ASSERT_TRUE(n.has_value()) << errc_name(n.error().code) << " field " << n.error().field;
  const auto framing = parse_framing("len2-binary");
  ASSERT_TRUE(framing.has_value());
  const auto prefix = write_frame_header(*framing, *n, std::span(s.received));
  ASSERT_TRUE(prefix.has_value());
  s.received_bytes = *prefix + *n;
}

class AllocTest : public ::testing::TestWithParam<std::string_view> {};

TEST_P(AllocTest, PerMessagePathAllocatesNothing) {
  const Dialect& dialect = builtin_dialect(GetParam());
  const bool iso93 = dialect.field(39).max_units == 3;  // ISO 8583:1993 action code, n 3
  const std::string_view response_code = iso93 ? "000" : "00";
  Session session(dialect);
  ASSERT_NO_FATAL_FAILURE(prepare_request(session, iso93));
  const auto framing = parse_framing("len2-binary");
  const auto none = parse_framing("none");
  ASSERT_TRUE(framing.has_value());
  ASSERT_TRUE(none.has_value());
  const FrameDecoder frames(*framing);
  const FrameDecoder unframed(*none, &dialect);

  Tally warmup;
  for (int i = 0; i < kWarmupMessages; ++i) {
    process_one(session, frames, unframed, response_code, warmup);
  }
  ASSERT_EQ(warmup.failures, 0U);
  ASSERT_EQ(warmup.messages, static_cast<std::size_t>(kWarmupMessages));

  Tally tally;
  const std::uint64_t allocations_before = thread_allocations();
  const std::uint64_t jemalloc_before = jemalloc_thread_allocated();
  for (int i = 0; i < kMeasuredMessages; ++i) {
    process_one(session, frames, unframed, response_code, tally);
  }
  const std::uint64_t jemalloc_after = jemalloc_thread_allocated();
  const std::uint64_t allocations_after = thread_allocations();

  EXPECT_EQ(allocations_after - allocations_before, 0U)
      << "operator new calls in " << kMeasuredMessages << " messages";
  EXPECT_EQ(jemalloc_after - jemalloc_before, 0U) << "jemalloc thread.allocated bytes";
  // The loop did the work it claims to have done.
  EXPECT_EQ(tally.failures, 0U);
  EXPECT_EQ(tally.messages, static_cast<std::size_t>(kMeasuredMessages));
  EXPECT_EQ(tally.fields, 20U * kMeasuredMessages);
  EXPECT_EQ(tally.tlv_objects, kIccObjects * kMeasuredMessages);
  EXPECT_GT(tally.text_bytes, 200U * kMeasuredMessages);
  EXPECT_GT(tally.response_bytes, 50U * kMeasuredMessages);
}

// The counter itself works: an allocation on this thread is seen (guards against the
// replacement silently not being linked in). The pointer escapes through a volatile, so the
// compiler cannot elide the allocation.
void* volatile g_escape = nullptr;

TEST(AllocCounterTest, SeesAnAllocation) {
  const std::uint64_t before = thread_allocations();
  g_escape = ::operator new(64);
  ::operator delete(g_escape);
  g_escape = nullptr;
  EXPECT_EQ(thread_allocations() - before, 1U);
}

std::string dialect_test_name(const ::testing::TestParamInfo<std::string_view>& info) {
  std::string name(info.param);
  for (char& c : name) {
    if (c == '-') {
      c = '_';
    }
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(ShippedDialects, AllocTest,
                         ::testing::Values("iso87-ascii", "iso87-ascii-binbitmap", "iso87-bcd",
                                           "iso93-ebcdic"),
                         dialect_test_name);

}  // namespace
}  // namespace authswitch::iso8583
