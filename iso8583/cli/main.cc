// iso8583: decode and encode ISO 8583 messages from the command line.
//
//   iso8583 decode --dialect NAME [--framing NAME] [--hex] [--mask]   bytes in, JSON lines out
//   iso8583 encode --dialect NAME [--framing NAME] [--hex]            JSON in, bytes out
//   iso8583 dialects                                                  the shipped dialects
//
// Exit status: 0 on success, 2 on bad input (one line on stderr naming the field and offset),
// 1 on a usage or dialect-file error.

#include <cstdio>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "iso8583/dialect_loader.h"
#include "iso8583/error.h"
#include "iso8583/framing.h"
#include "iso8583/message.h"

namespace {

using authswitch::iso8583::Dialect;
using authswitch::iso8583::Error;
using authswitch::iso8583::FieldView;
using authswitch::iso8583::MessageView;
using nlohmann::json;
namespace iso = authswitch::iso8583;

constexpr int kExitBadInput = 2;

struct BadInput : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void bad_input(const Error& e) {
  std::array<char, 160> buf{};
  throw BadInput(std::string(iso::describe(e, buf)));
}

std::string read_stdin() {
  return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
}

std::vector<std::byte> parse_hex(const std::string& text) {
  std::vector<std::byte> out;
  int hi = -1;
  std::size_t pos = 0;
  for (const char c : text) {
    ++pos;
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    }
    int v = -1;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    }
    if (v < 0) {
      throw BadInput("input offset " + std::to_string(pos - 1) + ": not a hex digit");
    }
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<std::byte>(hi * 16 + v));
      hi = -1;
    }
  }
  if (hi >= 0) {
    throw BadInput("input: odd number of hex digits");
  }
  return out;
}

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (const std::byte b : bytes) {
    s.push_back(kDigits[static_cast<unsigned>(b) >> 4U]);
    s.push_back(kDigits[static_cast<unsigned>(b) & 0x0FU]);
  }
  return s;
}

// Sensitive values: a numeric one (a PAN) keeps its first 6 and last 4 digits, anything else
// (track data, PIN blocks) is fully starred.
std::string mask(const std::string& v, bool numeric) {
  if (numeric && v.size() >= 13 && v.find_first_not_of("0123456789") == std::string::npos) {
    return v.substr(0, 6) + std::string(v.size() - 10, '*') + v.substr(v.size() - 4);
  }
  return std::string(v.size(), '*');
}

// Fields in data element order, as people read messages.
nlohmann::ordered_json to_json(const MessageView& msg, bool masked) {
  nlohmann::ordered_json j;
  const auto mti = msg.mti_text();
  if (!msg.header().empty()) {
    j["header"] = to_hex(msg.header());
  }
  j["mti"] = std::string(mti.begin(), mti.end());
  nlohmann::ordered_json fields = nlohmann::ordered_json::object();
  std::vector<std::byte> scratch(1U << 20U);
  for (int de = 2; de <= iso::kMaxField; ++de) {
    if (!msg.has(de)) {
      continue;
    }
    const FieldView f = msg.field(de);
    const auto v = iso::canonical_value(f, scratch);
    std::string text = f.spec->type == iso::ContentType::kB
                           ? to_hex(v)
                           : std::string(reinterpret_cast<const char*>(v.data()), v.size());
    if (masked && f.spec->sensitive) {
      text = mask(text, f.spec->type == iso::ContentType::kN);
    }
    fields[std::to_string(de)] = text;
  }
  j["fields"] = fields;
  return j;
}

int run_decode(const Dialect& dialect, const std::string& framing_name, bool hex, bool masked) {
  const std::string input = read_stdin();
  std::vector<std::byte> bytes;
  if (hex) {
    bytes = parse_hex(input);
  } else {
    const auto* p = reinterpret_cast<const std::byte*>(input.data());
    bytes.assign(p, p + input.size());
  }
  MessageView msg;
  if (framing_name.empty()) {
    const auto r = iso::decode(dialect, bytes, msg);
    if (!r) {
      bad_input(r.error());
    }
    std::cout << to_json(msg, masked).dump() << '\n';
    return 0;
  }
  const auto framing = iso::parse_framing(framing_name);
  if (!framing) {
    throw std::invalid_argument("unknown framing '" + framing_name + "'");
  }
  const iso::FrameDecoder frames(*framing, &dialect);
  std::span<const std::byte> rest(bytes);
  std::size_t base = 0;
  int count = 0;
  while (!rest.empty()) {
    const iso::FrameResult fr = frames.decode(rest);
    if (fr.status == iso::FrameStatus::kNeedMore) {
      throw BadInput("offset " + std::to_string(base) + ": frame truncated (" +
                     std::to_string(rest.size()) + " bytes left)");
    }
    if (fr.status == iso::FrameStatus::kMalformed) {
      Error e = fr.error;
      e.offset += static_cast<std::uint32_t>(base);
      bad_input(e);
    }
    if (fr.status == iso::FrameStatus::kComplete) {
      const auto r = iso::decode(dialect, fr.message, msg);
      if (!r) {
        Error e = r.error();
        e.offset += static_cast<std::uint32_t>(base) +
                    static_cast<std::uint32_t>(fr.message.data() - rest.data());
        bad_input(e);
      }
      auto j = to_json(msg, masked);
      if (!fr.header.empty()) {
        j["frame_header"] = to_hex(fr.header);
      }
      std::cout << j.dump() << '\n';
      ++count;
    }
    base += fr.consumed;
    rest = rest.subspan(fr.consumed);
  }
  if (count == 0) {
    throw BadInput("no message in the input");
  }
  return 0;
}

int run_encode(const Dialect& dialect, const std::string& framing_name, bool hex) {
  json j;
  try {
    j = json::parse(read_stdin());
  } catch (const json::exception& e) {
    throw BadInput(std::string("input is not JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("mti") || !j["mti"].is_string() ||
      j["mti"].get<std::string>().size() != 4 ||
      j["mti"].get<std::string>().find_first_not_of("0123456789") != std::string::npos) {
    throw BadInput("input: \"mti\" must be a string of 4 digits");
  }
  iso::MessageBuilder b(dialect);
  b.reset(static_cast<std::uint16_t>(std::stoi(j["mti"].get<std::string>())));
  std::vector<std::byte> header;
  if (j.contains("header")) {
    header = parse_hex(j["header"].get<std::string>());
    b.set_header(header);
  }
  std::vector<std::string> texts;
  std::vector<std::vector<std::byte>> blobs;
  const json fields = j.value("fields", json::object());
  texts.reserve(fields.size());
  blobs.reserve(fields.size());
  for (const auto& [key, value] : fields.items()) {
    int de = 0;
    try {
      de = std::stoi(key);
    } catch (const std::exception&) {
      de = 0;
    }
    if (de < 2 || de > iso::kMaxField || de == 65 || std::to_string(de) != key) {
      throw BadInput("input: \"" + key + "\" is not a data element number");
    }
    if (!dialect.field(de).defined) {
      bad_input(Error{iso::Errc::kUndefinedField, static_cast<std::uint16_t>(de), 0, 0});
    }
    if (!value.is_string()) {
      throw BadInput("field " + key + ": value must be a string");
    }
    if (dialect.field(de).type == iso::ContentType::kB) {
      try {
        blobs.push_back(parse_hex(value.get<std::string>()));
      } catch (const BadInput&) {
        throw BadInput("field " + key + ": binary values are hex");
      }
      b.set_bytes(de, blobs.back());
    } else {
      texts.push_back(value.get<std::string>());
      b.set_text(de, texts.back());
    }
  }
  std::vector<std::byte> out(dialect.info().max_message_bytes + 64);
  std::size_t prefix = 0;
  iso::Framing framing{};
  if (!framing_name.empty()) {
    const auto f = iso::parse_framing(framing_name);
    if (!f) {
      throw std::invalid_argument("unknown framing '" + framing_name + "'");
    }
    framing = *f;
    prefix = iso::length_header_bytes(framing.length) + framing.header_bytes;
  }
  const auto r = b.encode(std::span<std::byte>(out).subspan(prefix));
  if (!r) {
    bad_input(r.error());
  }
  std::size_t total = *r;
  if (!framing_name.empty()) {
    // The fixed frame header (e.g. a TPDU) is written as zeros: this tool has no routing.
    const auto h = iso::write_frame_header(framing, *r + framing.header_bytes, out);
    if (!h) {
      bad_input(h.error());
    }
    total += prefix;
  }
  out.resize(total);
  if (hex) {
    std::cout << to_hex(out) << '\n';
  } else {
    std::cout.write(reinterpret_cast<const char*>(out.data()),
                    static_cast<std::streamsize>(out.size()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"iso8583: decode and encode ISO 8583 messages"};
  app.require_subcommand(1);
  std::string dialect_name;
  std::string framing_name;
  bool hex = false;
  bool masked = false;
  auto* dec =
      app.add_subcommand("decode", "read one message (or framed messages) on stdin, print JSON");
  auto* enc = app.add_subcommand("encode", "read a JSON message on stdin, write its bytes");
  auto* lst = app.add_subcommand("dialects", "list the shipped dialects");
  for (auto* c : {dec, enc}) {
    c->add_option("--dialect", dialect_name, "shipped dialect name, or a dialect .toml file")
        ->required();
    c->add_option("--framing", framing_name,
                  "length header: none, len2-binary, len2-bcd, len4-ascii, len4-binary "
                  "[+header=N][+max=N]");
    c->add_flag("--hex", hex, "bytes as hex text instead of raw");
  }
  dec->add_flag("--mask", masked, "mask sensitive fields (PAN: first 6 and last 4 digits)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (lst->parsed()) {
      for (const auto name : iso::builtin_dialect_names()) {
        const Dialect& d = iso::builtin_dialect(name);
        std::cout << name << "\t" << d.info().description << '\n';
      }
      return 0;
    }
    const Dialect& dialect = iso::find_dialect(dialect_name);
    if (dec->parsed()) {
      return run_decode(dialect, framing_name, hex, masked);
    }
    return run_encode(dialect, framing_name, hex);
  } catch (const BadInput& e) {
    std::cerr << "error: " << e.what() << '\n';
    return kExitBadInput;
  } catch (const std::exception& e) {
    std::cerr << "iso8583: " << e.what() << '\n';
    return 1;
  }
}
