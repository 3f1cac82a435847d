#pragma once
// The deterministic pseudo-random generator of the traffic model and portfolios:
// xoshiro256** (Blackman and Vigna), seeded through SplitMix64. Not for cryptography; the
// same seed gives the same sequence on every platform (no std:: distribution is used, since
// their output differs between standard libraries).
// Thread-safety: a value; one per thread.

#include <array>
#include <cmath>
#include <cstdint>

namespace authswitch::netsim {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept {
    std::uint64_t x = seed;
    for (auto& w : s_) {
      x += 0x9E37'79B9'7F4A'7C15ULL;
      std::uint64_t z = x;
      z = (z ^ (z >> 30U)) * 0xBF58'476D'1CE4'E5B9ULL;
      z = (z ^ (z >> 27U)) * 0x94D0'49BB'1331'11EBULL;
      w = z ^ (z >> 31U);
    }
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17U;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n); n > 0 (modulo: the bias is below n / 2^64, far below what a traffic
  // mix can show).
  std::uint64_t below(std::uint64_t n) noexcept { return next() % n; }
  // Uniform in [0, 1).
  double unit() noexcept { return static_cast<double>(next() >> 11U) * 0x1.0p-53; }
  bool chance(double p) noexcept { return unit() < p; }
  // Standard normal (Box-Muller; one of the pair is dropped to stay stateless).
  double normal() noexcept {
    const double u1 = 1.0 - unit();  // (0, 1]
    const double u2 = unit();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << static_cast<unsigned>(k)) | (x >> static_cast<unsigned>(64 - k));
  }
  std::array<std::uint64_t, 4> s_{};
};

}  // namespace authswitch::netsim
