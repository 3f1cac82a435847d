#include "iso8583/dialect_loader.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

#include <toml++/toml.h>

namespace authswitch::iso8583 {
namespace {

// Where a problem is, for messages: "file:line: key: reason".
[[noreturn]] void fail_at(std::string_view source, const toml::node* node, const std::string& key,
                          const std::string& reason) {
  std::ostringstream s;
  s << source;
  if (node != nullptr && node->source().begin.line != 0) {
    s << ':' << node->source().begin.line;
  }
  s << ": " << key << ": " << reason;
  throw DialectError(s.str());
}

struct Context {
  std::string_view source;
  const toml::table* defaults = nullptr;
};

template <typename E, std::size_t N>
E pick(const Context& cx, const toml::node& node, const std::string& key,
       const std::array<std::pair<std::string_view, E>, N>& names) {
  const auto* s = node.as_string();
  if (s == nullptr) {
    fail_at(cx.source, &node, key, "expected a string");
  }
  for (const auto& [name, value] : names) {
    if (name == s->get()) {
      return value;
    }
  }
  std::string allowed;
  for (const auto& [name, value] : names) {
    allowed += allowed.empty() ? "" : ", ";
    allowed += name;
  }
  fail_at(cx.source, &node, key, "unknown value '" + s->get() + "' (one of: " + allowed + ")");
}

constexpr std::array<std::pair<std::string_view, ContentType>, 11> kTypes{{
    {"n", ContentType::kN},
    {"a", ContentType::kA},
    {"an", ContentType::kAn},
    {"ans", ContentType::kAns},
    {"anp", ContentType::kAnp},
    {"ns", ContentType::kNs},
    {"as", ContentType::kAs},
    {"b", ContentType::kB},
    {"z", ContentType::kZ},
    {"x+n", ContentType::kXn},
    {"xn", ContentType::kXn},
}};
constexpr std::array<std::pair<std::string_view, Encoding>, 6> kEncodings{{
    {"ascii", Encoding::kAscii},
    {"ebcdic", Encoding::kEbcdic},
    {"bcd", Encoding::kBcd},
    {"binary", Encoding::kBinary},
    {"ascii-hex", Encoding::kAsciiHex},
    {"ascii-sign-bcd", Encoding::kAsciiSignBcd},
}};
constexpr std::array<std::pair<std::string_view, PrefixEncoding>, 4> kPrefixEncodings{{
    {"ascii", PrefixEncoding::kAscii},
    {"ebcdic", PrefixEncoding::kEbcdic},
    {"bcd", PrefixEncoding::kBcd},
    {"binary", PrefixEncoding::kBinary},
}};
constexpr std::array<std::pair<std::string_view, LengthUnit>, 3> kUnits{{
    {"bytes", LengthUnit::kBytes},
    {"digits", LengthUnit::kDigits},
    {"nibbles", LengthUnit::kNibbles},
}};
constexpr std::array<std::pair<std::string_view, int>, 7> kLengths{{
    {"fixed", 0},
    {"L", 1},
    {"LL", 2},
    {"LLL", 3},
    {"LLLL", 4},
    {"LLLLL", 5},
    {"LLLLLL", 6},
}};
constexpr std::array<std::pair<std::string_view, MtiEncoding>, 3> kMtiEncodings{{
    {"ascii", MtiEncoding::kAscii},
    {"ebcdic", MtiEncoding::kEbcdic},
    {"bcd", MtiEncoding::kBcd},
}};
constexpr std::array<std::pair<std::string_view, BitmapEncoding>, 3> kBitmapEncodings{{
    {"binary", BitmapEncoding::kBinary},
    {"ascii-hex", BitmapEncoding::kAsciiHex},
    {"ebcdic-hex", BitmapEncoding::kEbcdicHex},
}};
constexpr std::array<std::pair<std::string_view, HeaderEncoding>, 3> kHeaderEncodings{{
    {"binary", HeaderEncoding::kBinary},
    {"ascii", HeaderEncoding::kAscii},
    {"ebcdic", HeaderEncoding::kEbcdic},
}};
constexpr std::array<std::pair<std::string_view, CompositeKind>, 3> kComposites{{
    {"positional", CompositeKind::kPositional},
    {"bitmapped", CompositeKind::kBitmapped},
    {"ber-tlv", CompositeKind::kBerTlv},
}};

constexpr std::array<std::string_view, 19> kFieldKeys{"name",
                                                      "type",
                                                      "length",
                                                      "max",
                                                      "min",
                                                      "encoding",
                                                      "prefix",
                                                      "prefix_bytes",
                                                      "unit",
                                                      "padding",
                                                      "sensitive",
                                                      "echo",
                                                      "composite",
                                                      "subfields",
                                                      "subfield_header_bytes",
                                                      "sub_bitmap_bytes",
                                                      "sub_bitmap",
                                                      "lenient_sign",
                                                      "note"};

// A field key's node: the field's own table first, then [defaults.<type>], then [defaults].
const toml::node* lookup(const Context& cx, const toml::table& field, std::string_view type,
                         std::string_view key) {
  if (const auto* n = field.get(key)) {
    return n;
  }
  if (cx.defaults != nullptr) {
    if (const auto* by_type = cx.defaults->get_as<toml::table>(type)) {
      if (const auto* n = by_type->get(key)) {
        return n;
      }
    }
    if (const auto* n = cx.defaults->get(key)) {
      if (!n->is_table()) {
        return n;
      }
    }
  }
  return nullptr;
}

std::int64_t get_int(const Context& cx, const toml::node& n, const std::string& key,
                     std::int64_t lo, std::int64_t hi) {
  const auto* v = n.as_integer();
  if (v == nullptr) {
    fail_at(cx.source, &n, key, "expected an integer");
  }
  if (v->get() < lo || v->get() > hi) {
    fail_at(cx.source, &n, key,
            "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  return v->get();
}

bool get_bool(const Context& cx, const toml::node& n, const std::string& key) {
  const auto* v = n.as_boolean();
  if (v == nullptr) {
    fail_at(cx.source, &n, key, "expected true or false");
  }
  return v->get();
}

void parse_padding(const Context& cx, const toml::node& n, const std::string& key, FieldSpec& f) {
  const auto* s = n.as_string();
  if (s == nullptr) {
    fail_at(cx.source, &n, key, "expected a string like \"left:0\"");
  }
  const std::string& v = s->get();
  if (v == "none") {
    f.pad_side = PadSide::kNone;
    return;
  }
  const auto colon = v.find(':');
  const std::string side = v.substr(0, colon);
  const std::string what = colon == std::string::npos ? "" : v.substr(colon + 1);
  if ((side != "left" && side != "right") || (what != "0" && what != "space" && what != "F")) {
    fail_at(cx.source, &n, key,
            "unknown padding '" + v +
                "' (none, left:0, right:0, left:space, right:space, "
                "left:F, right:F)");
  }
  f.pad_side = side == "left" ? PadSide::kLeft : PadSide::kRight;
  f.pad_char = what == "space" ? ' ' : what[0];
}

struct Parsed {
  FieldSpec spec;
  std::string name;
};

Parsed parse_field(const Context& cx, const toml::table& t, const std::string& key,
                   std::vector<CompositeSpec>& composites, int depth);

// True when validating a positional composite's value as a whole already validates each of
// its subfields: all fixed, same type, charset and encoding as the parent, tiling it exactly
// (and, for BCD, each an even number of digits so no pad nibble sits inside the parent).
bool subfields_implied(const FieldSpec& f, const std::vector<CompositeSpec>& composites) {
  if (f.composite != CompositeKind::kPositional || !f.is_fixed()) {
    return false;
  }
  const CompositeSpec& c = composites[f.composite_index];
  std::uint32_t wire = 0;
  for (int i = 1; i <= c.max_subfield; ++i) {
    const FieldSpec& s = c.subfields[static_cast<std::size_t>(i)];
    const bool odd_bcd = s.encoding == Encoding::kBcd && s.max_units % 2 != 0;
    if (!s.is_fixed() || s.type != f.type || s.encoding != f.encoding ||
        s.class_mask != f.class_mask || s.unit != f.unit || odd_bcd) {
      return false;
    }
    wire += s.fixed_wire_bytes;
  }
  return wire == f.fixed_wire_bytes;
}

void parse_composite(const Context& cx, const toml::table& t, const std::string& key,
                     std::string_view type, FieldSpec& f, std::vector<CompositeSpec>& composites,
                     int depth) {
  const auto* kind_node = t.get("composite");
  if (kind_node == nullptr) {
    if (t.get("subfields") != nullptr) {
      fail_at(cx.source, t.get("subfields"), key + ".subfields",
              "subfields need composite = \"positional\" or \"bitmapped\"");
    }
    return;
  }
  CompositeSpec c;
  c.kind = pick(cx, *kind_node, key + ".composite", kComposites);
  f.composite = c.kind;
  if (c.kind == CompositeKind::kBerTlv) {
    if (f.type != ContentType::kB) {
      fail_at(cx.source, kind_node, key + ".composite", "ber-tlv needs type b");
    }
    f.composite_index = static_cast<std::uint16_t>(composites.size());
    composites.push_back(std::move(c));
    return;
  }
  if (depth > 1) {
    fail_at(cx.source, kind_node, key + ".composite", "composites nest at most one level");
  }
  if (c.kind == CompositeKind::kBitmapped) {
    if (const auto* n = lookup(cx, t, type, "subfield_header_bytes")) {
      c.header_bytes =
          static_cast<std::uint8_t>(get_int(cx, *n, key + ".subfield_header_bytes", 0, 16));
    }
    const auto* bytes = t.get("sub_bitmap_bytes");
    c.bitmap_bytes =
        bytes == nullptr
            ? 8
            : static_cast<std::uint8_t>(get_int(cx, *bytes, key + ".sub_bitmap_bytes", 1, 8));
    if (const auto* n = t.get("sub_bitmap")) {
      c.bitmap_encoding = pick(cx, *n, key + ".sub_bitmap", kBitmapEncodings);
    }
  }
  const auto* subs = t.get_as<toml::table>("subfields");
  if (subs == nullptr || subs->empty()) {
    fail_at(cx.source, &t, key + ".subfields", "a composite field needs a subfields table");
  }
  int max_sub = 0;
  for (auto&& [k, v] : *subs) {
    const std::string sk = key + ".subfields." + std::string(k.str());
    int num = 0;
    try {
      num = std::stoi(std::string(k.str()));
    } catch (const std::exception&) {
      fail_at(cx.source, &v, sk, "subfield keys are numbers");
    }
    const int limit = c.kind == CompositeKind::kBitmapped ? c.bitmap_bytes * 8 : 99;
    if (num < 1 || num > limit) {
      fail_at(cx.source, &v, sk, "subfield number must be 1.." + std::to_string(limit));
    }
    max_sub = std::max(max_sub, num);
  }
  c.max_subfield = static_cast<std::uint16_t>(max_sub);
  c.subfields.resize(static_cast<std::size_t>(max_sub) + 1);
  c.names.resize(static_cast<std::size_t>(max_sub) + 1);
  for (auto&& [k, v] : *subs) {
    const std::string sk = key + ".subfields." + std::string(k.str());
    const auto* st = v.as_table();
    if (st == nullptr) {
      fail_at(cx.source, &v, sk, "expected a table");
    }
    const auto num = static_cast<std::size_t>(std::stoi(std::string(k.str())));
    Parsed p = parse_field(cx, *st, sk, composites, depth + 1);
    c.subfields[num] = p.spec;
    c.names[num] = std::move(p.name);
  }
  if (c.kind == CompositeKind::kPositional) {
    for (int i = 1; i <= max_sub; ++i) {
      if (!c.subfields[static_cast<std::size_t>(i)].defined) {
        fail_at(cx.source, subs, key + ".subfields",
                "positional subfields must be numbered 1..N without gaps (missing " +
                    std::to_string(i) + ")");
      }
    }
  }
  f.composite_index = static_cast<std::uint16_t>(composites.size());
  composites.push_back(std::move(c));
}

Parsed parse_field(const Context& cx, const toml::table& t, const std::string& key,
                   std::vector<CompositeSpec>& composites, int depth) {
  for (auto&& [k, v] : t) {
    if (std::find(kFieldKeys.begin(), kFieldKeys.end(), k.str()) == kFieldKeys.end()) {
      fail_at(cx.source, &v, key + "." + std::string(k.str()), "unknown key");
    }
  }
  Parsed p;
  FieldSpec& f = p.spec;
  const auto* type_node = t.get("type");
  if (type_node == nullptr) {
    fail_at(cx.source, &t, key + ".type", "missing (n, an, ans, b, z, x+n, ...)");
  }
  f.type = pick(cx, *type_node, key + ".type", kTypes);
  const std::string type = type_node->as_string()->get();
  if (const auto* n = t.get("name")) {
    if (!n->is_string()) {
      fail_at(cx.source, n, key + ".name", "expected a string");
    }
    p.name = n->as_string()->get();
  }
  const auto* length = lookup(cx, t, type, "length");
  if (length == nullptr) {
    fail_at(cx.source, &t, key + ".length", "missing (fixed, L, LL, LLL, ... LLLLLL)");
  }
  f.prefix_digits = static_cast<std::uint8_t>(pick(cx, *length, key + ".length", kLengths));
  const auto* max = t.get("max");
  if (max == nullptr) {
    fail_at(cx.source, &t, key + ".max", "missing (the fixed length, or the maximum)");
  }
  f.max_units = static_cast<std::uint32_t>(get_int(cx, *max, key + ".max", 1, 999999));
  // Checked here too (finalize_field_spec repeats it) so the message names the max key's line.
  if (!max_fits_prefix(f)) {
    fail_at(cx.source, max, key + ".max",
            "max length " + std::to_string(f.max_units) + " does not fit a " +
                std::to_string(f.prefix_digits) + "-digit length prefix");
  }
  if (const auto* n = t.get("min")) {
    f.min_units = static_cast<std::uint32_t>(get_int(cx, *n, key + ".min", 0, 999999));
  }
  // Defaults that depend on the type: binary fields are raw bytes, others ASCII.
  f.encoding = f.type == ContentType::kB ? Encoding::kBinary : Encoding::kAscii;
  if (const auto* n = lookup(cx, t, type, "encoding")) {
    f.encoding = pick(cx, *n, key + ".encoding", kEncodings);
  }
  if (const auto* n = lookup(cx, t, type, "prefix")) {
    f.prefix_encoding = pick(cx, *n, key + ".prefix", kPrefixEncodings);
  }
  if (const auto* n = lookup(cx, t, type, "prefix_bytes")) {
    f.prefix_bytes = static_cast<std::uint8_t>(get_int(cx, *n, key + ".prefix_bytes", 1, 6));
  }
  const bool bcd = f.encoding == Encoding::kBcd || f.encoding == Encoding::kAsciiSignBcd;
  f.unit = bcd ? (f.type == ContentType::kZ ? LengthUnit::kNibbles : LengthUnit::kDigits)
               : LengthUnit::kBytes;
  if (const auto* n = lookup(cx, t, type, "unit")) {
    f.unit = pick(cx, *n, key + ".unit", kUnits);
  }
  // Padding defaults: fixed numerics pad on the left with '0', fixed text on the right with
  // spaces; a variable BCD value with an odd digit count gets a right pad nibble 0.
  if (f.prefix_digits == 0) {
    const bool numeric = f.type == ContentType::kN || f.type == ContentType::kXn;
    if (numeric) {
      f.pad_side = PadSide::kLeft;
      f.pad_char = '0';
    } else if (f.type != ContentType::kB && f.type != ContentType::kZ) {
      f.pad_side = PadSide::kRight;
      f.pad_char = ' ';
    }
  } else if (bcd) {
    f.pad_side = PadSide::kRight;
    f.pad_char = '0';
  }
  if (const auto* n = lookup(cx, t, type, "padding")) {
    parse_padding(cx, *n, key + ".padding", f);
  }
  if (const auto* n = t.get("sensitive")) {
    f.sensitive = get_bool(cx, *n, key + ".sensitive");
  }
  if (const auto* n = t.get("echo")) {
    f.echo = get_bool(cx, *n, key + ".echo");
  }
  if (const auto* n = t.get("lenient_sign")) {
    if (get_bool(cx, *n, key + ".lenient_sign")) {
      f.sign_mask = cls::kSign | cls::kDigit;
    }
  }
  parse_composite(cx, t, key, type, f, composites, depth);
  if (std::string why = finalize_field_spec(f); !why.empty()) {
    fail_at(cx.source, &t, key, why);
  }
  f.check_inner = f.composite != CompositeKind::kNone && !subfields_implied(f, composites);
  return p;
}

constexpr std::array<int, 12> kDefaultEcho{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49};

std::unique_ptr<Dialect> compile(const toml::table& root, std::string_view source) {
  for (auto&& [k, v] : root) {
    const auto key = k.str();
    if (key != "name" && key != "description" && key != "message" && key != "defaults" &&
        key != "fields") {
      fail_at(source, &v, std::string(key), "unknown key");
    }
  }
  DialectInfo info;
  const auto* name = root.get_as<std::string>("name");
  if (name == nullptr || name->get().empty()) {
    fail_at(source, &root, "name", "missing");
  }
  info.name = name->get();
  if (const auto* d = root.get_as<std::string>("description")) {
    info.description = d->get();
  }
  Context cx{source, root.get_as<toml::table>("defaults")};
  std::vector<int> extra_echo;
  if (const auto* m = root.get_as<toml::table>("message")) {
    for (auto&& [k, v] : *m) {
      const std::string key = "message." + std::string(k.str());
      const auto ks = k.str();
      if (ks == "header_bytes") {
        info.header_bytes = static_cast<std::uint8_t>(get_int(cx, v, key, 0, 64));
      } else if (ks == "header_encoding") {
        info.header_encoding = pick(cx, v, key, kHeaderEncodings);
      } else if (ks == "mti") {
        info.mti_encoding = pick(cx, v, key, kMtiEncodings);
      } else if (ks == "bitmap") {
        info.bitmap_encoding = pick(cx, v, key, kBitmapEncodings);
      } else if (ks == "max_bitmaps") {
        info.max_bitmaps = static_cast<std::uint8_t>(get_int(cx, v, key, 1, 3));
      } else if (ks == "max_message_bytes") {
        info.max_message_bytes = static_cast<std::uint32_t>(get_int(cx, v, key, 16, 1 << 20));
      } else if (ks == "echo") {
        const auto* arr = v.as_array();
        if (arr == nullptr) {
          fail_at(source, &v, key, "expected an array of field numbers");
        }
        for (const auto& e : *arr) {
          extra_echo.push_back(static_cast<int>(get_int(cx, e, key, 2, kMaxField)));
        }
      } else {
        fail_at(source, &v, key, "unknown key");
      }
    }
  }
  std::array<FieldSpec, kFieldSlots> fields{};
  std::array<std::string, kFieldSlots> names{};
  std::vector<CompositeSpec> composites;
  composites.emplace_back();  // index 0: none
  const auto* ft = root.get_as<toml::table>("fields");
  if (ft == nullptr || ft->empty()) {
    fail_at(source, &root, "fields", "missing: a dialect defines at least one field");
  }
  const int max_field = info.max_bitmaps * 64;
  for (auto&& [k, v] : *ft) {
    const std::string key = "fields." + std::string(k.str());
    int de = 0;
    try {
      std::size_t used = 0;
      de = std::stoi(std::string(k.str()), &used);
      if (used != k.str().size()) {
        de = 0;
      }
    } catch (const std::exception&) {
      de = 0;
    }
    if (de < 2 || de > max_field || de == 65) {
      fail_at(source, &v, key,
              "field numbers are 2.." + std::to_string(max_field) +
                  " (1 and 65 are bitmap indicators)");
    }
    const auto* t = v.as_table();
    if (t == nullptr) {
      fail_at(source, &v, key, "expected a table");
    }
    Parsed p = parse_field(cx, *t, key, composites, 1);
    fields[static_cast<std::size_t>(de)] = p.spec;
    names[static_cast<std::size_t>(de)] = std::move(p.name);
  }
  for (int de : kDefaultEcho) {
    auto& f = fields[static_cast<std::size_t>(de)];
    if (f.defined && ft->get_as<toml::table>(std::to_string(de))->get("echo") == nullptr) {
      f.echo = true;
    }
  }
  for (int de : extra_echo) {
    auto& f = fields[static_cast<std::size_t>(de)];
    if (!f.defined) {
      fail_at(source, root.get("message"), "message.echo",
              "field " + std::to_string(de) + " is not defined");
    }
    f.echo = true;
  }
  return std::make_unique<Dialect>(std::move(info), fields, std::move(names),
                                   std::move(composites));
}

}  // namespace

std::unique_ptr<Dialect> load_dialect(std::string_view toml_text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << source_name << ':' << e.source().begin.line << ": " << e.description();
    throw DialectError(s.str());
  }
  return compile(root, source_name);
}

std::unique_ptr<Dialect> load_dialect_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw DialectError(path + ": cannot open dialect file");
  }
  std::ostringstream s;
  s << in.rdbuf();
  return load_dialect(s.str(), path);
}

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, std::unique_ptr<Dialect>, std::less<>> loaded;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

const Dialect& builtin_dialect(std::string_view name) {
  Registry& r = registry();
  const std::scoped_lock lock(r.mu);
  if (auto it = r.loaded.find(name); it != r.loaded.end()) {
    return *it->second;
  }
  for (const auto& e : embedded_dialects()) {
    if (e.name == name) {
      auto d = load_dialect(e.toml, std::string(e.name) + ".toml");
      const Dialect& ref = *d;
      r.loaded.emplace(std::string(name), std::move(d));
      return ref;
    }
  }
  throw std::out_of_range("unknown dialect '" + std::string(name) + "'");
}

std::vector<std::string_view> builtin_dialect_names() {
  std::vector<std::string_view> out;
  for (const auto& e : embedded_dialects()) {
    out.push_back(e.name);
  }
  return out;
}

const Dialect& find_dialect(std::string_view name_or_path) {
  if (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".toml") {
    Registry& r = registry();
    const std::string key = "file:" + std::string(name_or_path);
    {
      const std::scoped_lock lock(r.mu);
      if (auto it = r.loaded.find(key); it != r.loaded.end()) {
        return *it->second;
      }
    }
    auto d = load_dialect_file(std::string(name_or_path));
    const std::scoped_lock lock(r.mu);
    const Dialect& ref = *d;
    r.loaded.emplace(key, std::move(d));
    return ref;
  }
  return builtin_dialect(name_or_path);
}

}  // namespace authswitch::iso8583
