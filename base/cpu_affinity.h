#pragma once
// CPU affinity of threads (Linux): which CPUs this process may run on, and pinning the calling
// thread to one of them. A shard pinned to a CPU that Redis does not use keeps its wake-ups on
// that core (DESIGN.md section 8: a wake-up across cores costs ~100 us on these VMs).

#include <cstdint>
#include <string>
#include <vector>

#include <sched.h>

namespace authswitch::base {

// The CPUs thread `tid` (0: the calling thread) may run on (its affinity mask, e.g. as set by
// taskset), in order; empty when it cannot be read.
[[nodiscard]] inline std::vector<std::uint32_t> allowed_cpus(pid_t tid = 0) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<std::uint32_t> out;
  if (sched_getaffinity(tid, sizeof set, &set) != 0) {
    return out;
  }
  for (std::uint32_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) {
      out.push_back(cpu);
    }
  }
  return out;
}

// Pins the calling thread to `cpu`; false when the kernel refuses (not allowed, or offline).
inline bool pin_this_thread(std::uint32_t cpu) noexcept {
  if (cpu >= CPU_SETSIZE) {
    return false;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// "0-3,6": a list of CPUs (ascending) as taskset and Redis's *_cpulist options write it.
[[nodiscard]] inline std::string cpu_list_text(const std::vector<std::uint32_t>& cpus) {
  std::string out;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) {
      ++j;
    }
    out += (out.empty() ? "" : ",") + std::to_string(cpus[i]);
    if (j > i) {
      out += "-" + std::to_string(cpus[j]);
    }
    i = j + 1;
  }
  return out;
}

}  // namespace authswitch::base
