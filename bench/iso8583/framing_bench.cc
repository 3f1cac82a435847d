// Frame decoding cost per frame: a receive buffer holding kFramesPerBuffer frames back to
// back is cut up the way a session does it (decode, drop `consumed`, repeat). Swept over the
// length header kind and the message size; decoding reads only the prefix, so the cost
// should not grow with the message. The unframed kind (kNone) is dominated by measure() and
// is benchmarked with the message codec.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "base/assert.h"
#include "iso8583/framing.h"

namespace authswitch::iso8583 {
namespace {

constexpr std::size_t kFramesPerBuffer = 64;

// kFramesPerBuffer frames of `message_bytes` each, with a 5-byte fixed header when asked.
std::vector<std::byte> build_stream(const Framing& framing, std::size_t message_bytes) {
  const std::size_t body_bytes = framing.header_bytes + message_bytes;
  const std::size_t prefix_bytes = length_header_bytes(framing.length);
  std::vector<std::byte> stream;
  stream.reserve(kFramesPerBuffer * (prefix_bytes + body_bytes));
  for (std::size_t i = 0; i < kFramesPerBuffer; ++i) {
    const std::size_t at = stream.size();
    stream.resize(at + prefix_bytes + body_bytes, std::byte{'0'});
    const auto written =
        write_frame_header(framing, body_bytes, std::span(stream).subspan(at, prefix_bytes));
    AS_ASSERT(written.has_value());
  }
  return stream;
}

void BM_FrameDecode(benchmark::State& state) {
  Framing framing;
  framing.length = static_cast<LengthHeader>(state.range(0));
  framing.header_bytes = static_cast<std::uint16_t>(state.range(2));
  const auto message_bytes = static_cast<std::size_t>(state.range(1));
  const std::vector<std::byte> stream = build_stream(framing, message_bytes);
  const FrameDecoder decoder(framing);

  std::size_t frames = 0;
  for (auto _ : state) {
    std::span<const std::byte> rest(stream);
    while (!rest.empty()) {
      const FrameResult r = decoder.decode(rest);
      benchmark::DoNotOptimize(r.message.data());
      if (r.status != FrameStatus::kComplete) {
        state.SkipWithError("frame did not decode");
        return;
      }
      rest = rest.subspan(r.consumed);
      ++frames;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(frames));
  state.SetLabel(std::string(framing_name(framing.length)));
}

BENCHMARK(BM_FrameDecode)
    ->ArgNames({"kind", "msg_bytes", "header"})
    ->ArgsProduct({{static_cast<std::int64_t>(LengthHeader::kLen2Binary),
                    static_cast<std::int64_t>(LengthHeader::kLen2Bcd),
                    static_cast<std::int64_t>(LengthHeader::kLen4Ascii),
                    static_cast<std::int64_t>(LengthHeader::kLen4Binary)},
                   {64, 512, 4096},
                   {0, 5}});

}  // namespace
}  // namespace authswitch::iso8583
