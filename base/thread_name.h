#pragma once
// Names the calling thread, so top -H, perf and /proc/PID/task/*/comm tell a shard from the
// journal writer. Linux keeps 15 characters; a longer name is cut there.

#include <algorithm>
#include <array>
#include <string_view>

#include <pthread.h>

namespace authswitch::base {

inline void set_thread_name(std::string_view name) noexcept {
  std::array<char, 16> buf{};
  const std::size_t n = std::min(name.size(), buf.size() - 1);
  std::copy_n(name.data(), n, buf.data());
  (void)pthread_setname_np(pthread_self(), buf.data());
}

}  // namespace authswitch::base
