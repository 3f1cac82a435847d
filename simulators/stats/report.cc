#include "simulators/stats/report.h"

#include <string>

namespace authswitch::netsim {

double RunReport::throughput() const noexcept {
  return duration_s > 0 ? static_cast<double>(matched) / duration_s : 0.0;
}

bool RunReport::clean() const noexcept {
  return timeouts == 0 && late == 0 && duplicates == 0 && unmatched == 0 && mismatches == 0 &&
         errors == 0;
}

std::string render_text(const RunReport& r) { return r.title; }
std::string render_json(const RunReport& r) { return r.title; }
std::string render_html(const RunReport& r) { return r.title; }

}  // namespace authswitch::netsim
