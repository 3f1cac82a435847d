// Writes the holds library a switch loads for a rule set (its velocity definitions built in:
// limits::make_holds_library) to LIBRARY_FILE, and prints its function, then, one per line, the
// velocity arguments the switch sends with a typical authorization under that set
// (bench/limits/shipped_velocity.h), for bench/limits/script_floor: redis-benchmark then runs
// the holds call as the switch makes it. With --none: the library without velocity definitions
// (limits::holds_library()) and no arguments, for the floor without velocity.
// Usage: velocity_args LIBRARY_FILE [--none | RULES_FILE]   (default: config/rules.toml)

#include <exception>
#include <fstream>
#include <iostream>
#include <string>

#include "bench/limits/shipped_velocity.h"
#include "limits/holds_script.h"

int main(int argc, char** argv) {
  try {
    if (argc < 2 || argc > 3) {
      std::cerr << "usage: velocity_args LIBRARY_FILE [--none | RULES_FILE]\n";
      return 2;
    }
    const std::string arg = argc > 2 ? std::string(argv[2]) : std::string();
    const bool none = arg == "--none";
    const std::string path =
        arg.empty() || none ? std::string(AS_SOURCE_DIR) + "/config/rules.toml" : arg;
    const authswitch::limits::FunctionLibrary& library =
        none ? authswitch::limits::holds_library()
             : authswitch::bench::shipped_velocity(path).library;
    std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
    out << library.text;
    out.close();
    if (!out) {
      std::cerr << "velocity_args: cannot write " << argv[1] << '\n';
      return 1;
    }
    std::cout << library.function << '\n';
    if (!none) {
      for (const std::string_view a : authswitch::bench::shipped_velocity(path).args.args()) {
        std::cout << a << '\n';
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "velocity_args: " << e.what() << '\n';
    return 1;
  }
}
