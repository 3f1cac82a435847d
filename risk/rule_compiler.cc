// Rule files (TOML) to a compiled Plan: every problem is collected with its line and rule id,
// and a set is built only when there is none. toml++ stays private to this file.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

#include <toml++/toml.h>

#include "base/hash.h"
#include "risk/rules.h"
#include "risk/rules_internal.h"

namespace authswitch::risk {
namespace {

using internal::NamedList;
using internal::Plan;
using internal::Reason;

std::atomic<std::uint64_t> g_generation{0};

class Problems {
 public:
  explicit Problems(std::string_view source) : source_(source) {}

  void add(const toml::node* where, std::string_view rule_id, const std::string& what) {
    add_line(where != nullptr ? static_cast<int>(where->source().begin.line) : 0, rule_id, what);
  }
  void add_line(int line, std::string_view rule_id, const std::string& what) {
    std::string s(source_);
    if (line > 0) {
      s += ":" + std::to_string(line);
    }
    s += ": ";
    if (!rule_id.empty()) {
      s += "rule '" + std::string(rule_id) + "': ";
    }
    lines_.push_back(s + what);
  }
  [[nodiscard]] bool any() const { return !lines_.empty(); }
  [[nodiscard]] std::string text() const {
    std::string s;
    for (const std::string& l : lines_) {
      s += (s.empty() ? "" : "\n") + l;
    }
    return s;
  }

 private:
  std::string source_;
  std::vector<std::string> lines_;
};

std::optional<Reason> find_reason(std::string_view name) {
  for (std::size_t i = 0; i < internal::kReasonNames.size(); ++i) {
    if (internal::kReasonNames[i] == name) {
      return static_cast<Reason>(i);
    }
  }
  return std::nullopt;
}

std::string reason_list() {
  std::string s;
  for (const std::string_view r : internal::kReasonNames) {
    s += (s.empty() ? "" : ", ") + std::string(r);
  }
  return s;
}

bool valid_code(std::string_view c) {
  return c.size() == 2 && std::isalnum(static_cast<unsigned char>(c[0])) != 0 &&
         std::isalnum(static_cast<unsigned char>(c[1])) != 0;
}

bool valid_id(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

// Keys a table may have; others are reported (a misspelt key must not be ignored silently).
void check_keys(const toml::table& t, std::initializer_list<std::string_view> allowed,
                std::string_view rule_id, std::string_view where, Problems& p) {
  for (const auto& [key, node] : t) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) == allowed.end()) {
      p.add(&node, rule_id,
            "unknown key '" + std::string(key.str()) + "' in " + std::string(where));
    }
  }
}

std::vector<std::pair<std::string, NamedList>> read_lists(const toml::table& root, Problems& p) {
  std::vector<std::pair<std::string, NamedList>> lists;
  const toml::node* node = root.get("lists");
  if (node == nullptr) {
    return lists;
  }
  const toml::table* t = node->as_table();
  if (t == nullptr) {
    p.add(node, "", "'lists' must be a table of arrays");
    return lists;
  }
  for (const auto& [key, value] : *t) {
    const toml::array* a = value.as_array();
    if (a == nullptr) {
      p.add(&value, "", "list '" + std::string(key.str()) + "' must be an array");
      continue;
    }
    NamedList list;
    list.line = static_cast<int>(value.source().begin.line);
    for (const toml::node& item : *a) {
      if (const auto s = item.value<std::string>(); s && item.is_string()) {
        list.items.push_back(*s);
      } else if (const auto i = item.value<std::int64_t>(); i && item.is_integer()) {
        list.items.push_back(std::to_string(*i));
      } else {
        p.add(&item, "", "list '" + std::string(key.str()) + "': items are texts or integers");
      }
    }
    lists.emplace_back(std::string(key.str()), std::move(list));
  }
  return lists;
}

void read_policies(const toml::table& root, Plan& plan, Problems& p) {
  plan.policy_names = {"default"};
  plan.policies = {internal::kDefaultCodes};
  const toml::node* node = root.get("response_codes");
  if (node == nullptr) {
    return;
  }
  const toml::table* t = node->as_table();
  if (t == nullptr) {
    p.add(node, "", "'response_codes' must be a table of networks");
    return;
  }
  // The default policy first, so networks inherit what it changes.
  std::vector<std::pair<std::string, const toml::node*>> order;
  if (const toml::node* d = t->get("default")) {
    order.emplace_back("default", d);
  }
  for (const auto& [key, value] : *t) {
    if (key.str() != "default") {
      order.emplace_back(std::string(key.str()), &value);
    }
  }
  for (const auto& [name, value] : order) {
    const toml::table* codes = value->as_table();
    if (codes == nullptr) {
      p.add(value, "", "response_codes." + name + " must be a table");
      continue;
    }
    internal::Policy policy = plan.policies[0];
    for (const auto& [reason, code] : *codes) {
      const auto r = find_reason(reason.str());
      const auto c = code.value<std::string>();
      if (!r) {
        p.add(&code, "",
              "response_codes." + name + ": unknown reason '" + std::string(reason.str()) +
                  "' (one of: " + reason_list() + ")");
      } else if (!c || !valid_code(*c)) {
        p.add(&code, "",
              "response_codes." + name + "." + std::string(reason.str()) +
                  ": a response code is two characters, e.g. \"05\"");
      } else {
        policy[static_cast<std::size_t>(*r)] = {(*c)[0], (*c)[1]};
      }
    }
    if (name == "default") {
      plan.policies[0] = policy;
    } else {
      plan.policy_names.push_back(name);
      plan.policies.push_back(policy);
    }
  }
}

// What [[rule]] and [[velocity]] tables share: id (unique), line, description.
RuleInfo read_identity(const toml::table& t, const Plan& plan, Problems& p) {
  RuleInfo info;
  info.line = static_cast<int>(t.source().begin.line);
  info.id = t["id"].value_or(std::string());
  info.description = t["description"].value_or(std::string());
  const auto same = std::find_if(plan.infos.begin(), plan.infos.end(),
                                 [&](const RuleInfo& r) { return r.id == info.id; });
  if (!valid_id(info.id)) {
    p.add(&t, info.id, "'id' is required: 1-64 of a-z 0-9 - _");
  } else if (same != plan.infos.end()) {
    p.add(&t, info.id, "duplicate id (first defined on line " + std::to_string(same->line) + ")");
  }
  return info;
}

// What a rule does when it fires, as both tables write it: action, mode, reason or code, score.
struct Verdict {
  bool fixed_code = false;
  std::array<char, 2> code{};
  Reason reason = Reason::kDoNotHonour;
};

Verdict read_verdict(const toml::table& t, RuleInfo& info, Problems& p) {
  const std::string& id = info.id;
  Verdict v;
  const std::string action = t["action"].value_or(std::string());
  if (action == "decline") {
    info.action = Action::kDecline;
  } else if (action == "score") {
    info.action = Action::kScore;
  } else if (action == "review") {
    info.action = Action::kReview;
  } else {
    p.add(t.get("action") != nullptr ? t.get("action") : &t, id,
          "'action' must be \"decline\", \"score\" or \"review\"");
  }
  const std::string mode = t["mode"].value_or(std::string("enforce"));
  if (mode == "enforce") {
    info.mode = Mode::kEnforce;
  } else if (mode == "shadow") {
    info.mode = Mode::kShadow;
  } else if (mode == "off") {
    info.mode = Mode::kOff;
  } else {
    p.add(t.get("mode"), id, "'mode' must be \"enforce\", \"shadow\" or \"off\"");
  }
  info.reason = t["reason"].value_or(std::string());
  info.code = t["code"].value_or(std::string());
  if (info.action == Action::kDecline) {
    if (!info.code.empty() && !info.reason.empty()) {
      p.add(t.get("code"), id, "give 'code' or 'reason', not both");
    } else if (!info.code.empty()) {
      if (!valid_code(info.code)) {
        p.add(t.get("code"), id, "'code' is a two-character response code, e.g. \"62\"");
      } else {
        v.fixed_code = true;
        v.code = {info.code[0], info.code[1]};
      }
    } else {
      const auto r = find_reason(info.reason.empty() ? "do_not_honour" : info.reason);
      if (!r) {
        p.add(t.get("reason"), id,
              "unknown reason '" + info.reason + "' (one of: " + reason_list() + ")");
      } else {
        v.reason = *r;
      }
    }
  } else if (!info.code.empty() || !info.reason.empty()) {
    p.add(&t, id, "'code' and 'reason' apply to action \"decline\" only");
  }
  if (info.action == Action::kScore) {
    const auto score = t["score"].value<std::int64_t>();
    if (!score || *score < -10'000 || *score > 10'000 || *score == 0) {
      p.add(t.get("score") != nullptr ? t.get("score") : &t, id,
            "'score' is required for action \"score\": a non-zero integer in -10000..10000");
    } else {
      info.score = static_cast<std::int32_t>(*score);
    }
  } else if (t.get("score") != nullptr) {
    p.add(t.get("score"), id, "'score' applies to action \"score\" only");
  }
  return v;
}

void read_rule(const toml::table& t, internal::ExpressionContext& ctx, Problems& p) {
  Plan& plan = ctx.plan;
  RuleInfo info = read_identity(t, plan, p);
  const std::string id = info.id;
  check_keys(t, {"id", "description", "when", "action", "reason", "code", "score", "mode"}, id,
             "a rule", p);
  const Verdict verdict = read_verdict(t, info, p);
  internal::CompiledRule rule;
  rule.action = info.action;
  rule.mode = info.mode;
  rule.score = info.score;
  rule.fixed_code = verdict.fixed_code;
  rule.code = verdict.code;
  rule.reason = verdict.reason;

  const toml::node* when = t.get("when");
  info.when = when != nullptr ? when->value_or(std::string()) : std::string();
  if (info.when.empty()) {
    p.add(when != nullptr ? when : &t, id, "'when' is required: the condition, as text");
  } else {
    try {
      rule.root = internal::compile_expression(info.when, ctx);
    } catch (const std::invalid_argument& e) {
      p.add(when, id, std::string("when: ") + e.what());
    }
  }
  plan.infos.push_back(std::move(info));
  plan.rules.push_back(rule);
}

// "90s", "10m", "2h", "30d" to milliseconds; nullopt when malformed.
std::optional<std::int64_t> duration_ms(std::string_view text) {
  if (text.size() < 2) {
    return std::nullopt;
  }
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1'000;
      break;
    case 'm':
      unit = 60'000;
      break;
    case 'h':
      unit = 3'600'000;
      break;
    case 'd':
      unit = 86'400'000;
      break;
    default:
      return std::nullopt;
  }
  std::int64_t n = 0;
  const std::string_view digits = text.substr(0, text.size() - 1);
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (r.ec != std::errc() || r.ptr != digits.data() + digits.size() || n <= 0 || n > 100'000) {
    return std::nullopt;
  }
  return n * unit;
}

std::string cid_of(std::string_view definition) {
  std::uint64_t h = 1'469'598'103'934'665'603ULL;  // FNV-1a 64
  for (const char c : definition) {
    h = (h ^ static_cast<unsigned char>(c)) * 1'099'511'628'211ULL;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(10, '0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = kHex[(h >> (4 * i)) & 0xFU];
  }
  return out;
}

// A [[velocity]] table: a rule the holds script evaluates with its counters (rules.h,
// ScriptArgs). Shares id, description, action, reason/code, score and mode with [[rule]].
void read_velocity(const toml::table& t, internal::ExpressionContext& ctx, Problems& p) {
  Plan& plan = ctx.plan;
  RuleInfo info = read_identity(t, plan, p);
  info.velocity = true;
  const std::string id = info.id;
  check_keys(t,
             {"id", "description", "kind", "scope", "counts", "measure", "window", "filter",
              "threshold", "within", "action", "reason", "code", "score", "mode"},
             id, "a velocity rule", p);
  internal::VelocityRule v;
  v.rule = static_cast<std::uint16_t>(plan.infos.size());
  const std::string kind = t["kind"].value_or(std::string("window"));
  const auto threshold = t["threshold"].value<std::int64_t>();
  const std::string text_of = [&] {
    std::string s = kind;
    for (const char* k : {"scope", "counts", "measure", "window", "filter", "within"}) {
      if (const auto x = t[k].value<std::string>()) {
        s += std::string(" ") + k + "=" + *x;
      }
    }
    return s + (threshold ? " threshold=" + std::to_string(*threshold) : "");
  }();
  info.when = text_of;
  v.ref = "0";
  v.measure = "n";
  v.threshold = "0";
  if (kind == "window") {
    v.kind = "w";
    internal::VelocityCounter c;
    const std::string scope = t["scope"].value_or(std::string("card"));
    const std::string counts = t["counts"].value_or(std::string("approvals"));
    const std::string measure = t["measure"].value_or(std::string("count"));
    c.scope = scope == "card" ? "c" : scope == "account" ? "a" : "";
    c.counts = counts == "approvals"  ? "a"
               : counts == "declines" ? "d"
               : counts == "all"      ? "*"
                                      : "";
    v.measure = measure == "count" ? "n" : measure == "amount" ? "a" : "";
    if (c.scope.empty()) {
      p.add(t.get("scope"), id, "'scope' must be \"card\" or \"account\"");
    }
    if (c.counts.empty()) {
      p.add(t.get("counts"), id, "'counts' must be \"approvals\", \"declines\" or \"all\"");
    }
    if (v.measure.empty()) {
      p.add(t.get("measure"), id, "'measure' must be \"count\" or \"amount\"");
    }
    const auto window = duration_ms(t["window"].value_or(std::string()));
    if (!window || *window < 60'000 || *window > 30LL * 86'400'000) {
      p.add(t.get("window") != nullptr ? t.get("window") : &t, id,
            "'window' is required: a duration from 1m to 30d, e.g. \"10m\", \"24h\", \"7d\"");
    } else {
      c.window_ms = std::to_string(*window);
    }
    const std::string filter = t["filter"].value_or(std::string());
    if (!filter.empty()) {
      try {
        c.filter_root = internal::compile_expression(filter, ctx);
        c.has_filter = true;
      } catch (const std::invalid_argument& e) {
        p.add(t.get("filter"), id, std::string("filter: ") + e.what());
      }
    }
    if (!threshold || *threshold < 0) {
      p.add(&t, id, "'threshold' is required: a count, or minor units for measure \"amount\"");
    }
    c.cid = cid_of(c.scope + "|" + c.counts + "|" + c.window_ms + "|" + filter);
    // Rules with the same scope, counts, window and filter share one counter.
    const auto same = std::find_if(plan.counters.begin(), plan.counters.end(),
                                   [&](const auto& x) { return x.cid == c.cid; });
    if (same == plan.counters.end()) {
      plan.counters.push_back(std::move(c));
      v.ref = std::to_string(plan.counters.size());
    } else {
      v.ref = std::to_string(same - plan.counters.begin() + 1);
    }
  } else if (kind == "consecutive_declines") {
    v.kind = "cd";
    if (!threshold || *threshold < 1) {
      p.add(&t, id, "'threshold' is required: the declines in a row before this one");
    }
  } else if (kind == "first_country") {
    v.kind = "fc";
  } else if (kind == "first_mcc") {
    v.kind = "fm";
  } else if (kind == "country_change") {
    v.kind = "cc";
    const auto within = duration_ms(t["within"].value_or(std::string()));
    if (!within) {
      p.add(&t, id, "'within' is required for country_change: a duration, e.g. \"2h\"");
    } else {
      v.threshold = std::to_string(*within);
    }
  } else {
    p.add(t.get("kind"), id,
          "'kind' must be \"window\", \"consecutive_declines\", \"first_country\", "
          "\"first_mcc\" or \"country_change\"");
  }
  if (threshold && v.kind != "cc") {
    v.threshold = std::to_string(*threshold);
  }
  // Action, reason or code, score and mode as in [[rule]].
  const Verdict verdict = read_verdict(t, info, p);
  v.action = info.action == Action::kDecline ? "d" : info.action == Action::kScore ? "s" : "r";
  v.shadow = info.mode == Mode::kShadow ? "1" : "0";
  v.fixed_code = verdict.fixed_code;
  v.code = verdict.code;
  v.reason = verdict.reason;
  v.score = std::to_string(info.score);
  plan.infos.push_back(std::move(info));
  // An "off" rule is not sent to the script at all.
  if (info.mode != Mode::kOff) {
    plan.velocity.push_back(std::move(v));
  }
}

}  // namespace

std::unique_ptr<const RuleSet> compile_rules(std::string_view toml_text, std::string_view source,
                                             std::string_view zoneinfo_dir) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << source << ':' << e.source().begin.line << ": " << e.description();
    throw RuleSetError(s.str());
  }
  Problems p(source);
  auto plan = std::make_unique<Plan>();
  check_keys(root,
             {"version", "time_zone", "scoring", "lists", "response_codes", "rule", "velocity"}, "",
             "the file", p);
  plan->version = root["version"].value_or(std::string());
  if (plan->version.empty()) {
    p.add_line(1, "", "'version' is required (text recorded with every decision)");
  }
  const std::string zone = root["time_zone"].value_or(std::string("UTC"));
  if (const toml::table* scoring = root["scoring"].as_table()) {
    check_keys(*scoring, {"decline_score", "reason"}, "", "[scoring]", p);
    const auto threshold = (*scoring)["decline_score"].value<std::int64_t>();
    if (!threshold || *threshold <= 0 || *threshold > 1'000'000) {
      p.add(scoring, "", "scoring.decline_score must be an integer in 1..1000000");
    } else {
      plan->decline_score = static_cast<std::int32_t>(*threshold);
    }
    const std::string reason = (*scoring)["reason"].value_or(std::string("suspected_fraud"));
    if (const auto r = find_reason(reason)) {
      plan->score_reason = *r;
    } else {
      p.add(scoring, "", "scoring.reason: unknown reason '" + reason + "'");
    }
  }
  const auto lists = read_lists(root, p);
  read_policies(root, *plan, p);
  internal::ExpressionContext ctx{*plan, lists, zone, zoneinfo_dir};
  const toml::node* rules = root.get("rule");
  if (rules == nullptr || rules->as_array() == nullptr) {
    p.add_line(1, "", "no [[rule]] tables");
  } else {
    for (const toml::node& r : *rules->as_array()) {
      if (const toml::table* t = r.as_table()) {
        read_rule(*t, ctx, p);
      } else {
        p.add(&r, "", "each [[rule]] must be a table");
      }
    }
  }
  // Velocity rules come after every [[rule]], so Plan::rules and the first infos line up.
  if (const toml::node* velocity = root.get("velocity")) {
    if (velocity->as_array() == nullptr) {
      p.add(velocity, "", "[[velocity]] must be an array of tables");
    } else {
      for (const toml::node& v : *velocity->as_array()) {
        if (const toml::table* t = v.as_table()) {
          read_velocity(*t, ctx, p);
        } else {
          p.add(&v, "", "each [[velocity]] must be a table");
        }
      }
    }
    if (plan->counters.size() > kVelocityCountersMax) {
      p.add(velocity, "",
            "more than " + std::to_string(kVelocityCountersMax) + " distinct velocity counters");
    }
    if (plan->velocity.size() > kVelocityRulesMax) {
      p.add(velocity, "", "more than " + std::to_string(kVelocityRulesMax) + " velocity rules");
    }
  }
  if (plan->infos.size() > kNoRule - 1) {
    p.add_line(1, "", "too many rules");
  }
  // Card overrides name rules by the hash of their id: two ids must not share one.
  for (const RuleInfo& r : plan->infos) {
    plan->rule_hashes.push_back(base::fnv1a32(r.id));
  }
  for (std::size_t i = 0; i < plan->infos.size(); ++i) {
    for (std::size_t j = i + 1; j < plan->infos.size(); ++j) {
      if (plan->rule_hashes[i] == plan->rule_hashes[j] && plan->infos[i].id != plan->infos[j].id) {
        p.add_line(plan->infos[j].line, plan->infos[j].id,
                   "its id's hash equals rule '" + plan->infos[i].id + "''s: rename one");
      }
    }
  }
  if (p.any()) {
    throw RuleSetError(p.text());
  }
  internal::build_tests(*plan);
  internal::build_definitions(*plan);
  plan->generation = g_generation.fetch_add(1, std::memory_order_relaxed) + 1;
  return std::unique_ptr<const RuleSet>(new RuleSet(std::move(plan)));
}

std::unique_ptr<const RuleSet> load_rules(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw RuleSetError(path + ": cannot open");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return compile_rules(text.str(), path);
}

}  // namespace authswitch::risk
