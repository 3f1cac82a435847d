// The condition language of rule files (`when = "..."`): a recursive-descent parser that type
// checks each comparison against the field it reads and appends the compiled nodes to the plan.
//
//   expr      := and_expr ('or' and_expr)*
//   and_expr  := not_expr ('and' not_expr)*
//   not_expr  := 'not' not_expr | '(' expr ')' | predicate
//   predicate := field [ op value | ['not'] 'in' list ]       (a boolean field stands alone)
//   field     := name [ '(' 'zone' ')' ]                      (local_hour('Europe/Berlin'))
//   value     := number [currency] | 'text' | name
//   list      := '[' item (',' item)* ']' | '@' list_name      item := value | number '..' number
#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <string>

#include "risk/rules_internal.h"

namespace authswitch::risk::internal {
namespace {

enum class Type : std::uint8_t { kInt, kEnum, kBool, kText, kLocal };

struct FieldDef {
  std::string_view name;
  Feature feature;
  Type type;
};

constexpr std::array<FieldDef, 22> kFields{{
    {"amount", Feature::kAmount, Type::kInt},
    {"currency", Feature::kCurrency, Type::kInt},
    {"mti", Feature::kMti, Type::kInt},
    {"transaction_type", Feature::kTransactionType, Type::kInt},
    {"mcc", Feature::kMcc, Type::kInt},
    {"acquirer_country", Feature::kAcquirerCountry, Type::kInt},
    {"pan_entry_code", Feature::kPanEntryCode, Type::kInt},
    {"condition_code", Feature::kConditionCode, Type::kInt},
    {"card_expiry", Feature::kCardExpiry, Type::kInt},
    {"presented_expiry", Feature::kPresentedExpiry, Type::kInt},
    {"channel", Feature::kChannel, Type::kEnum},
    {"entry_mode", Feature::kEntryMode, Type::kEnum},
    {"card_status", Feature::kCardStatus, Type::kEnum},
    {"card_present", Feature::kCardPresent, Type::kBool},
    {"card_expired", Feature::kCardExpired, Type::kBool},
    {"expiry_mismatch", Feature::kExpiryMismatch, Type::kBool},
    {"local_hour", Feature::kLocalHour, Type::kLocal},
    {"local_minute", Feature::kLocalMinute, Type::kLocal},
    {"local_weekday", Feature::kLocalWeekday, Type::kLocal},
    {"merchant_country", Feature::kMerchantCountry, Type::kText},
    {"terminal_id", Feature::kTerminalId, Type::kText},
    {"merchant_id", Feature::kMerchantId, Type::kText},
}};

struct EnumName {
  Feature feature;
  std::string_view name;
  std::int64_t value;
};

constexpr std::array<EnumName, 25> kEnumNames{{
    {Feature::kChannel, "pos", static_cast<std::int64_t>(Channel::kPos)},
    {Feature::kChannel, "cnp", static_cast<std::int64_t>(Channel::kCnp)},
    {Feature::kChannel, "atm", static_cast<std::int64_t>(Channel::kAtm)},
    {Feature::kEntryMode, "unknown", static_cast<std::int64_t>(EntryMode::kUnknown)},
    {Feature::kEntryMode, "manual", static_cast<std::int64_t>(EntryMode::kManual)},
    {Feature::kEntryMode, "magstripe", static_cast<std::int64_t>(EntryMode::kMagstripe)},
    {Feature::kEntryMode, "chip", static_cast<std::int64_t>(EntryMode::kChip)},
    {Feature::kEntryMode, "contactless", static_cast<std::int64_t>(EntryMode::kContactless)},
    {Feature::kEntryMode, "contactless_magstripe",
     static_cast<std::int64_t>(EntryMode::kContactlessMagstripe)},
    {Feature::kEntryMode, "fallback", static_cast<std::int64_t>(EntryMode::kFallback)},
    {Feature::kEntryMode, "ecommerce", static_cast<std::int64_t>(EntryMode::kEcommerce)},
    {Feature::kEntryMode, "credential_on_file",
     static_cast<std::int64_t>(EntryMode::kCredentialOnFile)},
    {Feature::kCardStatus, "active", static_cast<std::int64_t>(CardStatus::kActive)},
    {Feature::kCardStatus, "blocked", static_cast<std::int64_t>(CardStatus::kBlocked)},
    {Feature::kCardStatus, "lost", static_cast<std::int64_t>(CardStatus::kLost)},
    {Feature::kCardStatus, "stolen", static_cast<std::int64_t>(CardStatus::kStolen)},
    {Feature::kCardStatus, "closed", static_cast<std::int64_t>(CardStatus::kClosed)},
    {Feature::kCardStatus, "inactive", static_cast<std::int64_t>(CardStatus::kInactive)},
    {Feature::kCardStatus, "unknown", static_cast<std::int64_t>(CardStatus::kUnknown)},
    {Feature::kTransactionType, "purchase", 0},
    {Feature::kTransactionType, "cash", 1},
    {Feature::kTransactionType, "cashback", 9},
    {Feature::kTransactionType, "refund", 20},
    {Feature::kTransactionType, "balance_inquiry", 30},
    {Feature::kTransactionType, "balance_inquiry_savings", 31},
}};

constexpr std::size_t kMaxNodesPerRule = 512;
constexpr int kMaxDepth = 48;
constexpr std::size_t kMaxZones = 8;

enum class Tok : std::uint8_t {
  kEnd,
  kName,
  kNumber,
  kText,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kComma,
  kAt,
  kRange,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
};

struct Token {
  Tok kind = Tok::kEnd;
  std::string_view text;
  std::size_t column = 1;
};

[[noreturn]] void fail(std::size_t column, const std::string& why) {
  throw std::invalid_argument("column " + std::to_string(column) + ": " + why);
}

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) { advance(); }
  [[nodiscard]] const Token& peek() const { return tok_; }
  Token take() {
    Token t = tok_;
    advance();
    return t;
  }

 private:
  void advance() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_])) != 0) {
      ++pos_;
    }
    tok_ = Token{Tok::kEnd, {}, pos_ + 1};
    if (pos_ >= s_.size()) {
      return;
    }
    const std::size_t start = pos_;
    const char c = s_[pos_];
    const auto one = [&](Tok k, std::size_t n) {
      tok_ = Token{k, s_.substr(start, n), start + 1};
      pos_ += n;
    };
    const char next = pos_ + 1 < s_.size() ? s_[pos_ + 1] : '\0';
    if (std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_') {
      while (pos_ < s_.size() &&
             (std::isalnum(static_cast<unsigned char>(s_[pos_])) != 0 || s_[pos_] == '_')) {
        ++pos_;
      }
      tok_ = Token{Tok::kName, s_.substr(start, pos_ - start), start + 1};
    } else if (std::isdigit(static_cast<unsigned char>(c)) != 0) {
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_])) != 0) {
        ++pos_;
      }
      // A decimal point followed by a digit belongs to the number; ".." is a range.
      if (pos_ + 1 < s_.size() && s_[pos_] == '.' &&
          std::isdigit(static_cast<unsigned char>(s_[pos_ + 1])) != 0) {
        ++pos_;
        while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_])) != 0) {
          ++pos_;
        }
      }
      tok_ = Token{Tok::kNumber, s_.substr(start, pos_ - start), start + 1};
    } else if (c == '\'' || c == '"') {
      const std::size_t close = s_.find(c, pos_ + 1);
      if (close == std::string_view::npos) {
        fail(start + 1, "unterminated text");
      }
      tok_ = Token{Tok::kText, s_.substr(start + 1, close - start - 1), start + 1};
      pos_ = close + 1;
    } else if (c == '(') {
      one(Tok::kLParen, 1);
    } else if (c == ')') {
      one(Tok::kRParen, 1);
    } else if (c == '[') {
      one(Tok::kLBracket, 1);
    } else if (c == ']') {
      one(Tok::kRBracket, 1);
    } else if (c == ',') {
      one(Tok::kComma, 1);
    } else if (c == '@') {
      one(Tok::kAt, 1);
    } else if (c == '.' && next == '.') {
      one(Tok::kRange, 2);
    } else if (c == '=' && next == '=') {
      one(Tok::kEq, 2);
    } else if (c == '!' && next == '=') {
      one(Tok::kNe, 2);
    } else if (c == '<') {
      next == '=' ? one(Tok::kLe, 2) : one(Tok::kLt, 1);
    } else if (c == '>') {
      next == '=' ? one(Tok::kGe, 2) : one(Tok::kGt, 1);
    } else {
      fail(start + 1, std::string("unexpected character '") + c + "'");
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  Token tok_;
};

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

class Parser {
 public:
  Parser(std::string_view text, ExpressionContext& ctx) : lex_(text), ctx_(ctx) {}

  std::uint32_t parse() {
    const std::uint32_t root = expr(0);
    if (lex_.peek().kind != Tok::kEnd) {
      fail(lex_.peek().column, "unexpected '" + std::string(lex_.peek().text) + "'");
    }
    return root;
  }

 private:
  std::uint32_t add(const Node& n) {
    if (++count_ > kMaxNodesPerRule) {
      fail(1, "condition too long (over " + std::to_string(kMaxNodesPerRule) + " terms)");
    }
    ctx_.plan.nodes.push_back(n);
    return static_cast<std::uint32_t>(ctx_.plan.nodes.size() - 1);
  }

  bool keyword(std::string_view word) {
    if (lex_.peek().kind == Tok::kName && lex_.peek().text == word) {
      lex_.take();
      return true;
    }
    return false;
  }

  Token expect(Tok kind, std::string_view what) {
    if (lex_.peek().kind != kind) {
      const Token& t = lex_.peek();
      fail(t.column,
           "expected " + std::string(what) +
               (t.kind == Tok::kEnd ? ", found the end" : ", found '" + std::string(t.text) + "'"));
    }
    return lex_.take();
  }

  std::uint32_t binary(NodeKind kind, std::uint32_t l, std::uint32_t r) {
    Node n;
    n.kind = kind;
    n.left = l;
    n.right = r;
    return add(n);
  }

  std::uint32_t expr(int depth) {
    check_depth(depth);
    std::uint32_t left = and_expr(depth + 1);
    while (keyword("or")) {
      left = binary(NodeKind::kOr, left, and_expr(depth + 1));
    }
    return left;
  }

  std::uint32_t and_expr(int depth) {
    check_depth(depth);
    std::uint32_t left = not_expr(depth + 1);
    while (keyword("and")) {
      left = binary(NodeKind::kAnd, left, not_expr(depth + 1));
    }
    return left;
  }

  std::uint32_t not_expr(int depth) {
    check_depth(depth);
    if (keyword("not")) {
      Node n;
      n.kind = NodeKind::kNot;
      n.left = not_expr(depth + 1);
      return add(n);
    }
    if (lex_.peek().kind == Tok::kLParen) {
      lex_.take();
      const std::uint32_t inner = expr(depth + 1);
      expect(Tok::kRParen, "')'");
      return inner;
    }
    return predicate();
  }

  void check_depth(int depth) const {
    if (depth > kMaxDepth) {
      fail(lex_.peek().column, "condition nested too deeply");
    }
  }

  std::uint32_t predicate() {
    const Token name = expect(Tok::kName, "a field name");
    const auto* def = std::find_if(kFields.begin(), kFields.end(),
                                   [&](const FieldDef& f) { return f.name == name.text; });
    if (def == kFields.end()) {
      fail(name.column, "unknown field '" + std::string(name.text) + "'");
    }
    Node n;
    n.feature = def->feature;
    Type type = def->type;
    if (type == Type::kLocal) {
      std::string_view zone = ctx_.default_zone;
      if (lex_.peek().kind == Tok::kLParen) {
        lex_.take();
        zone = expect(Tok::kText, "a time zone name in quotes").text;
        expect(Tok::kRParen, "')'");
      }
      n.zone = zone_index(zone, name.column);
      type = Type::kInt;
    }
    if (type == Type::kBool) {
      n.kind = NodeKind::kIntCmp;
      n.cmp = Cmp::kNe;
      n.value = 0;
      return add(n);
    }
    const Token op = lex_.peek();
    bool negate = false;
    if (op.kind == Tok::kName && (op.text == "in" || op.text == "not")) {
      lex_.take();
      if (op.text == "not") {
        const Token in = expect(Tok::kName, "'in' after 'not'");
        if (in.text != "in") {
          fail(in.column, "expected 'in' after 'not'");
        }
        negate = true;
      }
      n.negate = negate;
      return list_predicate(n, *def, type);
    }
    const std::optional<Cmp> cmp = comparison(op.kind);
    if (!cmp) {
      fail(op.column, "expected a comparison (==, !=, <, <=, >, >=) or 'in' after '" +
                          std::string(name.text) + "'");
    }
    lex_.take();
    n.cmp = *cmp;
    const Token value = lex_.take();
    if (type == Type::kText) {
      if (n.cmp != Cmp::kEq && n.cmp != Cmp::kNe) {
        fail(op.column, "'" + std::string(name.text) + "' is text: only == and != apply");
      }
      if (value.kind != Tok::kText && value.kind != Tok::kName && value.kind != Tok::kNumber) {
        fail(value.column, "expected a text value");
      }
      n.kind = NodeKind::kTextCmp;
      check_text(value.text, *def, value.column);
      ctx_.plan.texts.push_back(text_key(value.text));
      n.set = static_cast<std::uint32_t>(ctx_.plan.texts.size() - 1);
      return add(n);
    }
    if (type == Type::kEnum && n.cmp != Cmp::kEq && n.cmp != Cmp::kNe) {
      fail(op.column, "'" + std::string(name.text) + "' is a name: only == and != apply");
    }
    // amount > 500.00 USD: an amount in a currency.
    if (def->feature == Feature::kAmount && value.kind == Tok::kNumber &&
        lex_.peek().kind == Tok::kName && find_currency(lex_.peek().text)) {
      const Token cur = lex_.take();
      const CurrencyInfo info = *find_currency(cur.text);
      n.kind = NodeKind::kMoneyCmp;
      n.currency = info.numeric;
      n.value = money(value, info.exponent, cur.text);
      return add(n);
    }
    n.kind = NodeKind::kIntCmp;
    n.value = int_value(value, *def);
    return add(n);
  }

  static std::optional<Cmp> comparison(Tok t) {
    switch (t) {
      case Tok::kEq:
        return Cmp::kEq;
      case Tok::kNe:
        return Cmp::kNe;
      case Tok::kLt:
        return Cmp::kLt;
      case Tok::kLe:
        return Cmp::kLe;
      case Tok::kGt:
        return Cmp::kGt;
      case Tok::kGe:
        return Cmp::kGe;
      default:
        return std::nullopt;
    }
  }

  // "500.00" in a currency of `exponent` decimals to minor units; never floating point.
  static std::int64_t money(const Token& t, std::uint8_t exponent, std::string_view cur) {
    const std::size_t dot = t.text.find('.');
    const std::string_view whole = t.text.substr(0, dot);
    const std::string_view frac = dot == std::string_view::npos ? "" : t.text.substr(dot + 1);
    if (frac.size() > exponent) {
      fail(t.column, std::string(cur) + " has " + std::to_string(exponent) + " decimals, '" +
                         std::string(t.text) + "' has " + std::to_string(frac.size()));
    }
    std::string digits(whole);
    digits += frac;
    digits.append(exponent - frac.size(), '0');
    const auto v = parse_int(digits);
    if (!v || digits.size() > 17) {
      fail(t.column, "amount '" + std::string(t.text) + "' is too large");
    }
    return *v;
  }

  std::int64_t int_value(const Token& t, const FieldDef& def) {
    if (def.type == Type::kEnum || def.feature == Feature::kTransactionType) {
      for (const EnumName& e : kEnumNames) {
        if (e.feature == def.feature && e.name == t.text) {
          return e.value;
        }
      }
      if (def.type == Type::kEnum) {
        std::string names;
        for (const EnumName& e : kEnumNames) {
          if (e.feature == def.feature) {
            names += (names.empty() ? "" : ", ") + std::string(e.name);
          }
        }
        fail(t.column, "'" + std::string(t.text) + "' is not a " + std::string(def.name) +
                           " (one of: " + names + ")");
      }
    }
    if (def.feature == Feature::kCurrency && t.kind != Tok::kNumber) {
      if (const auto c = find_currency(t.text)) {
        return c->numeric;
      }
      fail(t.column, "unknown currency '" + std::string(t.text) + "'");
    }
    if (t.kind == Tok::kNumber || t.kind == Tok::kText) {
      if (const auto v = parse_int(t.text)) {
        return *v;
      }
    }
    fail(t.column, "expected a whole number for '" + std::string(def.name) + "', found '" +
                       std::string(t.text) + "'");
  }

  std::uint32_t list_predicate(Node& n, const FieldDef& def, Type type) {
    if (type == Type::kBool) {
      fail(lex_.peek().column, "'" + std::string(def.name) + "' is true or false: use it alone");
    }
    std::vector<Token> items;
    std::vector<std::pair<Token, Token>> ranges;
    if (lex_.peek().kind == Tok::kAt) {
      lex_.take();
      const Token list = expect(Tok::kName, "a list name after '@'");
      const auto it = std::find_if(ctx_.lists.begin(), ctx_.lists.end(),
                                   [&](const auto& l) { return l.first == list.text; });
      if (it == ctx_.lists.end()) {
        fail(list.column, "unknown list '@" + std::string(list.text) + "'");
      }
      return from_named(n, def, type, it->second, list);
    }
    expect(Tok::kLBracket, "'[' or '@list'");
    while (true) {
      const Token item = lex_.take();
      if (item.kind != Tok::kNumber && item.kind != Tok::kText && item.kind != Tok::kName) {
        fail(item.column, "expected a list item");
      }
      if (lex_.peek().kind == Tok::kRange) {
        lex_.take();
        ranges.emplace_back(item, expect(Tok::kNumber, "a number after '..'"));
      } else {
        items.push_back(item);
      }
      if (lex_.peek().kind == Tok::kComma) {
        lex_.take();
        continue;
      }
      expect(Tok::kRBracket, "',' or ']'");
      break;
    }
    if (type == Type::kText) {
      if (!ranges.empty()) {
        fail(ranges.front().first.column, "ranges apply to numbers only");
      }
      std::vector<TextKey> set;
      set.reserve(items.size());
      for (const Token& t : items) {
        check_text(t.text, def, t.column);
        set.push_back(text_key(t.text));
      }
      return text_set(n, std::move(set));
    }
    std::vector<std::pair<std::int64_t, std::int64_t>> set;
    for (const Token& t : items) {
      const std::int64_t v = int_value(t, def);
      set.emplace_back(v, v);
    }
    for (const auto& [lo, hi] : ranges) {
      if (type == Type::kEnum) {
        fail(lo.column, "ranges apply to numbers only");
      }
      set.emplace_back(int_value(lo, def), int_value(hi, def));
      if (set.back().first > set.back().second) {
        fail(lo.column,
             "range " + std::string(lo.text) + ".." + std::string(hi.text) + " is empty");
      }
    }
    return int_set(n, std::move(set));
  }

  // A named list, typed by the field it is used with.
  std::uint32_t from_named(Node& n, const FieldDef& def, Type type, const NamedList& list,
                           const Token& at) {
    for (const auto& named : ctx_.named_sets) {
      if (named.list == at.text && named.feature == n.feature && named.zone == n.zone) {
        n.kind = type == Type::kText ? NodeKind::kTextIn : NodeKind::kIntIn;
        n.set = named.set;
        return add(n);
      }
    }
    const std::uint32_t node = compile_named(n, def, type, list, at);
    ctx_.named_sets.push_back({std::string(at.text), n.feature, n.zone, ctx_.plan.nodes[node].set});
    return node;
  }

  std::uint32_t compile_named(Node& n, const FieldDef& def, Type type, const NamedList& list,
                              const Token& at) {
    if (type == Type::kText) {
      std::vector<TextKey> set;
      set.reserve(list.items.size());
      for (const std::string& item : list.items) {
        if (item.size() > max_text(def)) {
          fail(at.column, "list '@" + std::string(at.text) + "' (line " +
                              std::to_string(list.line) + "): '" + item + "' is longer than " +
                              std::string(def.name) + "'s " + std::to_string(max_text(def)) +
                              " characters: it can never match");
        }
        set.push_back(text_key(item));
      }
      return text_set(n, std::move(set));
    }
    std::vector<std::pair<std::int64_t, std::int64_t>> set;
    for (const std::string& item : list.items) {
      const std::size_t range = item.find("..");
      const auto value = [&](std::string_view s) {
        Token t{Tok::kText, s, at.column};
        try {
          return int_value(t, def);
        } catch (const std::invalid_argument& e) {
          throw std::invalid_argument(std::string(e.what()) + " (in list '@" +
                                      std::string(at.text) + "', line " +
                                      std::to_string(list.line) + ")");
        }
      };
      if (range == std::string::npos) {
        const std::int64_t v = value(item);
        set.emplace_back(v, v);
      } else {
        set.emplace_back(value(std::string_view(item).substr(0, range)),
                         value(std::string_view(item).substr(range + 2)));
      }
    }
    return int_set(n, std::move(set));
  }

  std::uint32_t int_set(Node& n, std::vector<std::pair<std::int64_t, std::int64_t>> set) {
    std::sort(set.begin(), set.end());
    std::vector<std::pair<std::int64_t, std::int64_t>> merged;
    for (const auto& r : set) {
      if (!merged.empty() && r.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, r.second);
      } else {
        merged.push_back(r);
      }
    }
    n.kind = NodeKind::kIntIn;
    ctx_.plan.int_sets.push_back(std::move(merged));
    n.set = static_cast<std::uint32_t>(ctx_.plan.int_sets.size() - 1);
    return add(n);
  }

  static std::size_t max_text(const FieldDef& def) {
    switch (def.feature) {
      case Feature::kMerchantCountry:
        return 3;
      case Feature::kTerminalId:
        return 8;
      default:
        return 15;
    }
  }

  static void check_text(std::string_view text, const FieldDef& def, std::size_t column) {
    if (text.size() > max_text(def)) {
      fail(column, "'" + std::string(text) + "' is longer than " + std::string(def.name) + "'s " +
                       std::to_string(max_text(def)) + " characters: it can never match");
    }
  }

  std::uint32_t text_set(Node& n, std::vector<TextKey> set) {
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
    n.kind = NodeKind::kTextIn;
    ctx_.plan.text_sets.push_back(std::move(set));
    n.set = static_cast<std::uint32_t>(ctx_.plan.text_sets.size() - 1);
    return add(n);
  }

  std::uint8_t zone_index(std::string_view zone, std::size_t column) {
    auto& zones = ctx_.plan.zones;
    for (std::size_t i = 0; i < zones.size(); ++i) {
      if (zones[i].name() == zone) {
        return static_cast<std::uint8_t>(i);
      }
    }
    if (zones.size() == kMaxZones) {
      fail(column, "more than " + std::to_string(kMaxZones) + " time zones in one rule set");
    }
    try {
      zones.push_back(TimeZone::load(zone, ctx_.zoneinfo_dir));
    } catch (const std::exception& e) {
      fail(column, "time zone '" + std::string(zone) + "': " + e.what());
    }
    return static_cast<std::uint8_t>(zones.size() - 1);
  }

  Lexer lex_;
  ExpressionContext& ctx_;
  std::size_t count_ = 0;
};

struct CurrencyRow {
  std::string_view alpha;
  std::uint16_t numeric;
  std::uint8_t exponent;
};

// ISO 4217, the currencies issuers settle in most (extend as needed).
constexpr std::array<CurrencyRow, 36> kCurrencies{{
    {"AED", 784, 2}, {"ARS", 32, 2},  {"AUD", 36, 2},  {"BHD", 48, 3},  {"BRL", 986, 2},
    {"CAD", 124, 2}, {"CHF", 756, 2}, {"CLP", 152, 0}, {"CNY", 156, 2}, {"COP", 170, 2},
    {"CZK", 203, 2}, {"DKK", 208, 2}, {"EUR", 978, 2}, {"GBP", 826, 2}, {"HKD", 344, 2},
    {"HUF", 348, 2}, {"IDR", 360, 2}, {"ILS", 376, 2}, {"INR", 356, 2}, {"ISK", 352, 0},
    {"JOD", 400, 3}, {"JPY", 392, 0}, {"KRW", 410, 0}, {"KWD", 414, 3}, {"MXN", 484, 2},
    {"NOK", 578, 2}, {"NZD", 554, 2}, {"PHP", 608, 2}, {"PLN", 985, 2}, {"SAR", 682, 2},
    {"SEK", 752, 2}, {"SGD", 702, 2}, {"THB", 764, 2}, {"TRY", 949, 2}, {"USD", 840, 2},
    {"ZAR", 710, 2},
}};

}  // namespace

std::optional<CurrencyInfo> find_currency(std::string_view code) noexcept {
  for (const CurrencyRow& c : kCurrencies) {
    if (c.alpha == code) {
      return CurrencyInfo{c.numeric, c.exponent};
    }
  }
  if (code.size() == 3) {
    std::uint16_t n = 0;
    const auto r = std::from_chars(code.data(), code.data() + 3, n);
    if (r.ec == std::errc() && r.ptr == code.data() + 3) {
      for (const CurrencyRow& c : kCurrencies) {
        if (c.numeric == n) {
          return CurrencyInfo{c.numeric, c.exponent};
        }
      }
    }
  }
  return std::nullopt;
}

std::uint32_t compile_expression(std::string_view text, ExpressionContext& ctx) {
  Parser p(text, ctx);
  return p.parse();
}

}  // namespace authswitch::risk::internal
