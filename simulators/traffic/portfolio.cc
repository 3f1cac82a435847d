#include "simulators/traffic/portfolio.h"

#include <stdexcept>

namespace authswitch::netsim {

std::string_view channel_name(Channel c) noexcept {
  switch (c) {
    case Channel::kPos:
      return "pos";
    case Channel::kCnp:
      return "cnp";
    case Channel::kAtm:
      return "atm";
  }
  return "pos";
}

const LimitProfileDef* Portfolio::profile(std::string_view name) const noexcept {
  for (const auto& p : profiles) {
    if (p.name == name) {
      return &p;
    }
  }
  return nullptr;
}

Portfolio Portfolio::load(const std::string& test_cards_csv) {
  throw std::runtime_error(test_cards_csv + ": not implemented yet");
}

std::vector<LimitProfileDef> default_profiles() { return {}; }

Portfolio generate_portfolio(const SeedOptions& /*o*/) { return {}; }

int seed(const SeedOptions& /*o*/) { return 1; }

bool luhn_valid(std::string_view /*digits*/) noexcept { return false; }
char luhn_check_digit(std::string_view /*digits_without_check*/) noexcept { return '0'; }

}  // namespace authswitch::netsim
