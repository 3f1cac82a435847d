// Rule files (TOML) to a compiled Plan: every problem is collected with its line and rule id,
// and a set is built only when there is none. toml++ stays private to this file.
#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>
#include <string>

#include <toml++/toml.h>

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

void read_rule(const toml::table& t, internal::ExpressionContext& ctx, Problems& p) {
  Plan& plan = ctx.plan;
  RuleInfo info;
  info.line = static_cast<int>(t.source().begin.line);
  info.id = t["id"].value_or(std::string());
  const std::string id = info.id;
  if (!valid_id(id)) {
    p.add(&t, id, "'id' is required: 1-64 of a-z 0-9 - _");
  } else if (std::any_of(plan.infos.begin(), plan.infos.end(),
                         [&](const RuleInfo& r) { return r.id == id; })) {
    p.add(&t, id,
          "duplicate id (first defined on line " +
              std::to_string(std::find_if(plan.infos.begin(), plan.infos.end(),
                                          [&](const RuleInfo& r) { return r.id == id; })
                                 ->line) +
              ")");
  }
  check_keys(t, {"id", "description", "when", "action", "reason", "code", "score", "mode"}, id,
             "a rule", p);
  info.description = t["description"].value_or(std::string());
  internal::CompiledRule rule;

  const std::string action = t["action"].value_or(std::string());
  if (action == "decline") {
    rule.action = Action::kDecline;
  } else if (action == "score") {
    rule.action = Action::kScore;
  } else if (action == "review") {
    rule.action = Action::kReview;
  } else {
    p.add(t.get("action") != nullptr ? t.get("action") : &t, id,
          "'action' must be \"decline\", \"score\" or \"review\"");
  }
  info.action = rule.action;

  const std::string mode = t["mode"].value_or(std::string("enforce"));
  if (mode == "enforce") {
    rule.mode = Mode::kEnforce;
  } else if (mode == "shadow") {
    rule.mode = Mode::kShadow;
  } else if (mode == "off") {
    rule.mode = Mode::kOff;
  } else {
    p.add(t.get("mode"), id, "'mode' must be \"enforce\", \"shadow\" or \"off\"");
  }
  info.mode = rule.mode;

  info.reason = t["reason"].value_or(std::string());
  info.code = t["code"].value_or(std::string());
  if (rule.action == Action::kDecline) {
    if (!info.code.empty() && !info.reason.empty()) {
      p.add(t.get("code"), id, "give 'code' or 'reason', not both");
    } else if (!info.code.empty()) {
      if (!valid_code(info.code)) {
        p.add(t.get("code"), id, "'code' is a two-character response code, e.g. \"62\"");
      } else {
        rule.fixed_code = true;
        rule.code = {info.code[0], info.code[1]};
      }
    } else {
      const auto r = find_reason(info.reason.empty() ? "do_not_honour" : info.reason);
      if (!r) {
        p.add(t.get("reason"), id,
              "unknown reason '" + info.reason + "' (one of: " + reason_list() + ")");
      } else {
        rule.reason = *r;
      }
    }
  } else if (!info.code.empty() || !info.reason.empty()) {
    p.add(&t, id, "'code' and 'reason' apply to action \"decline\" only");
  }
  if (rule.action == Action::kScore) {
    const auto score = t["score"].value<std::int64_t>();
    if (!score || *score < -10'000 || *score > 10'000 || *score == 0) {
      p.add(t.get("score") != nullptr ? t.get("score") : &t, id,
            "'score' is required for action \"score\": a non-zero integer in -10000..10000");
    } else {
      rule.score = static_cast<std::int32_t>(*score);
    }
  } else if (t.get("score") != nullptr) {
    p.add(t.get("score"), id, "'score' applies to action \"score\" only");
  }
  info.score = rule.score;

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
  check_keys(root, {"version", "time_zone", "scoring", "lists", "response_codes", "rule"}, "",
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
    if (plan->rules.size() > kNoRule - 1) {
      p.add_line(1, "", "too many rules");
    }
  }
  if (p.any()) {
    throw RuleSetError(p.text());
  }
  internal::build_tests(*plan);
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
