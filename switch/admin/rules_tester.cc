#include "switch/admin/rules_tester.h"

#include <charconv>
#include <istream>
#include <ostream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "risk/authorization.h"
#include "risk/time_zone.h"

namespace authswitch::admin {
namespace {

using nlohmann::json;

// "2026-11-24T15:30:00Z" (or with .sss before Z) to ms since the epoch; false when malformed.
bool parse_time(std::string_view s, std::int64_t& out) {
  const auto num = [&](std::size_t pos, std::size_t len, int& v) {
    const auto r = std::from_chars(s.data() + pos, s.data() + pos + len, v);
    return r.ec == std::errc() && r.ptr == s.data() + pos + len;
  };
  int y = 0;
  int mo = 0;
  int d = 0;
  int h = 0;
  int mi = 0;
  int sec = 0;
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
      s.back() != 'Z' || !num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) || !num(11, 2, h) ||
      !num(14, 2, mi) || !num(17, 2, sec) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
      mi > 59 || sec > 60) {
    return false;
  }
  int ms = 0;
  if (s.size() == 24 && s[19] == '.') {
    if (!num(20, 3, ms)) {
      return false;
    }
  } else if (s.size() != 20) {
    return false;
  }
  const std::int64_t days =
      risk::days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  out = ((days * 24 + h) * 60 + mi) * 60'000LL + sec * 1'000LL + ms;
  return true;
}

bool parse_status(std::string_view s, risk::CardStatus& out) {
  static constexpr std::array<std::pair<std::string_view, risk::CardStatus>, 6> kNames{{
      {"active", risk::CardStatus::kActive},
      {"blocked", risk::CardStatus::kBlocked},
      {"lost", risk::CardStatus::kLost},
      {"stolen", risk::CardStatus::kStolen},
      {"closed", risk::CardStatus::kClosed},
      {"inactive", risk::CardStatus::kInactive},
  }};
  for (const auto& [name, status] : kNames) {
    if (name == s) {
      out = status;
      return true;
    }
  }
  return false;
}

// Reads one line into `a`; returns "" or what is wrong with it.
std::string read_line(const std::string& line, const RuleTestOptions& options,
                      risk::Authorization& a, std::string& id) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::parse_error& e) {
    // Not e.what(): it quotes the input, which may hold a PAN.
    return "not JSON (syntax error at byte " + std::to_string(e.byte) + ")";
  }
  if (!j.is_object() || !j.contains("mti") || !j["mti"].is_string()) {
    return "expected an object with \"mti\" and \"fields\", as the iso8583 CLI prints";
  }
  const json fields = j.value("fields", json::object());
  if (!fields.is_object()) {
    return "\"fields\" must be an object";
  }
  // Views into these strings are read by from_texts before they go out of scope.
  std::array<std::string, 12> texts;
  const auto field = [&](std::size_t slot, const char* de) -> std::string_view {
    const auto it = fields.find(de);
    if (it == fields.end() || !it->is_string()) {
      return {};
    }
    texts[slot] = it->get<std::string>();
    return texts[slot];
  };
  const std::string mti = j["mti"].get<std::string>();
  risk::FieldTexts f;
  f.mti = mti;
  f.de3 = field(0, "3");
  f.de4 = field(1, "4");
  f.de14 = field(2, "14");
  f.de18 = field(3, "18");
  f.de19 = field(4, "19");
  f.de22 = field(5, "22");
  f.de25 = field(6, "25");
  f.de41 = field(7, "41");
  f.de42 = field(8, "42");
  f.de43 = field(9, "43");
  f.de49 = field(10, "49");
  a = risk::Authorization{};
  if (!risk::from_texts(f, a)) {
    return "a field is not what its definition says (MTI 4 digits; DE 3, 4, 14, 18, 19, 22, 25, "
           "49 digits)";
  }
  a.card_status = risk::CardStatus::kActive;
  a.now_ms = options.now_ms;
  if (const auto card = j.find("card"); card != j.end() && card->is_object()) {
    if (!parse_status(card->value("status", std::string("active")), a.card_status)) {
      return "card.status must be active, blocked, lost, stolen, closed or inactive";
    }
    const std::string expiry = card->value("expiry", std::string());
    int yymm = 0;
    const auto r = std::from_chars(expiry.data(), expiry.data() + expiry.size(), yymm);
    if (!expiry.empty() &&
        (expiry.size() != 4 || r.ec != std::errc() || r.ptr != expiry.data() + 4)) {
      return "card.expiry must be YYMM";
    }
    a.card_expiry_yymm = static_cast<std::uint16_t>(yymm);
  }
  if (const auto time = j.find("time"); time != j.end()) {
    if (!time->is_string() || !parse_time(time->get<std::string>(), a.now_ms)) {
      return "time must be UTC like 2026-11-24T15:30:00Z";
    }
  }
  id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : std::string();
  return "";
}

void print_text(std::ostream& out, std::size_t line, const std::string& id,
                const risk::RuleSet& set, const risk::RiskDecision& d) {
  out << "line " << line;
  if (!id.empty()) {
    out << " (" << id << ")";
  }
  out << ": " << risk::outcome_name(d.outcome) << ' ' << d.code();
  if (d.deciding_rule != risk::kNoRule) {
    out << " by " << set.rules()[d.deciding_rule].id;
  } else if (d.outcome == risk::Outcome::kDecline) {
    out << " by score " << d.score << " >= " << set.decline_score();
  }
  out << "; score " << d.score;
  std::string fired;
  std::string shadow;
  for (const risk::FiredRule& f : d.fired_rules()) {
    std::string& list = f.shadow ? shadow : fired;
    list += (list.empty() ? "" : ", ") + set.rules()[f.rule].id;
    if (f.value != 0 || f.threshold != 0) {
      list += " (" + std::to_string(f.value) + " vs " + std::to_string(f.threshold) + ")";
    }
  }
  out << "; fired: " << (fired.empty() ? "none" : fired);
  if (!shadow.empty()) {
    out << "; shadow: " << shadow << " (score " << d.shadow_score << ")";
  }
  out << '\n';
}

void print_json(std::ostream& out, std::size_t line, const std::string& id,
                const risk::RuleSet& set, const risk::RiskDecision& d) {
  json fired = json::array();
  for (const risk::FiredRule& f : d.fired_rules()) {
    fired.push_back({{"rule", set.rules()[f.rule].id},
                     {"shadow", f.shadow},
                     {"value", f.value},
                     {"threshold", f.threshold}});
  }
  json j = {{"line", line},
            {"outcome", std::string(risk::outcome_name(d.outcome))},
            {"code", std::string(d.code())},
            {"score", d.score},
            {"shadow_score", d.shadow_score},
            {"fired", fired},
            {"version", std::string(set.version())}};
  if (!id.empty()) {
    j["id"] = id;
  }
  if (d.deciding_rule != risk::kNoRule) {
    j["rule"] = set.rules()[d.deciding_rule].id;
  }
  out << j.dump() << '\n';
}

}  // namespace

int test_rules(const risk::RuleSet& set, std::istream& in, const RuleTestOptions& options,
               std::ostream& out, std::ostream& err) {
  const std::uint16_t policy = set.network_policy(options.network);
  if (!options.json) {
    out << "rule set " << set.version() << ": " << set.rules().size() << " rules";
    std::string velocity;
    for (const risk::RuleInfo& r : set.rules()) {
      if (r.velocity) {
        velocity += (velocity.empty() ? "" : ", ") + r.id;
      }
    }
    if (!velocity.empty()) {
      out << "; velocity rules run in Redis with each card's history, not here: " << velocity;
    }
    out << '\n';
  }
  std::string line;
  std::size_t number = 0;
  std::size_t bad = 0;
  risk::Authorization a;
  risk::RiskDecision d;
  std::string id;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      continue;
    }
    const std::string problem = read_line(line, options, a, id);
    if (!problem.empty()) {
      err << "line " << number << ": " << problem << '\n';
      ++bad;
      continue;
    }
    set.evaluate(a, {}, policy, d);
    if (options.json) {
      print_json(out, number, id, set, d);
    } else {
      print_text(out, number, id, set, d);
    }
  }
  return bad == 0 ? 0 : 2;
}

}  // namespace authswitch::admin
