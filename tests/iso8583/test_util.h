#pragma once
// Helpers shared by the codec tests: hex conversion and loading test data files.

#include <cstddef>
#include <fstream>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace authswitch::iso8583::test {

inline std::vector<std::byte> from_hex(std::string_view hex) {
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("bad hex");
  };
  if (hex.size() % 2 != 0) {
    throw std::invalid_argument("odd hex length");
  }
  std::vector<std::byte> out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::byte>(nib(hex[2 * i]) * 16 + nib(hex[2 * i + 1]));
  }
  return out;
}

inline std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const std::byte b : bytes) {
    out.push_back(kDigits[static_cast<unsigned>(b) >> 4U]);
    out.push_back(kDigits[static_cast<unsigned>(b) & 0x0FU]);
  }
  return out;
}

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot open " + path);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string data_path(std::string_view rel) {
  return std::string(AS_TEST_DATA_DIR) + "/" + std::string(rel);
}

}  // namespace authswitch::iso8583::test
