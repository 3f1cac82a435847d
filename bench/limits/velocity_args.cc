// Prints, one per line, the velocity arguments the switch sends with a typical authorization
// under a rule set (bench/limits/shipped_velocity.h), for bench/limits/script_floor's floor with
// velocity: redis-benchmark then runs the holds call as the switch makes it.
// Usage: velocity_args [RULES_FILE]   (default: the repository's config/rules.toml)

#include <exception>
#include <iostream>
#include <string>

#include "bench/limits/shipped_velocity.h"

int main(int argc, char** argv) {
  try {
    const std::string path =
        argc > 1 ? std::string(argv[1]) : std::string(AS_SOURCE_DIR) + "/config/rules.toml";
    for (const std::string_view a : authswitch::bench::shipped_velocity_args(path).args()) {
      std::cout << a << '\n';
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "velocity_args: " << e.what() << '\n';
    return 1;
  }
}
