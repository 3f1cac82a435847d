// Conformance: every public vector in tests/data/vectors decodes with its dialect file in
// tests/data/dialects to exactly the expected values, and re-encodes to the same bytes.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "iso8583/composite.h"
#include "iso8583/dialect_loader.h"
#include "iso8583/message.h"
#include "iso8583/tlv.h"
#include "tests/iso8583/test_util.h"

namespace authswitch::iso8583 {
namespace {

using nlohmann::json;
using test::from_hex;
using test::to_hex;

struct Vector {
  std::string id;
  json message;  // one message object (wire_hex, layout, expected, ...)
  json parent;   // the file's top-level object
};

// Test names and failure messages show the vector id, not the object's bytes.
void PrintTo(const Vector& v, std::ostream* os) { *os << v.id; }

std::vector<Vector> load_vectors() {
  std::vector<Vector> out;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(test::data_path("vectors"))) {
    if (e.path().extension() == ".json") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const json d = json::parse(test::read_file(f.string()));
    if (d.at("wire_scope") != "message") {
      continue;
    }
    out.push_back({d.at("id"), d, d});
    const json extra = d.value("additional_messages", json::array());
    for (const auto& m : extra) {
      out.push_back({m.at("id"), m, d});
    }
  }
  return out;
}

// Canonical value of a field as the vectors write it: text, or lowercase hex for b fields.
std::string vector_form(const FieldView& f) {
  std::array<std::byte, 2048> scratch;
  const auto v = canonical_value(f, scratch);
  if (f.spec->type == ContentType::kB) {
    return to_hex(v);
  }
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

// Vectors that a strict decoder must reject, with the field and reason.
const std::map<std::string, std::pair<int, Errc>> kNegative = {
    // v02c puts "cardholder PAN" in DE 2, declared n..19: pyiso8583 does not check classes.
    {"v02c", {2, Errc::kBadCharset}},
};

class Conformance : public ::testing::TestWithParam<Vector> {};

TEST_P(Conformance, DecodesToExpectedValuesAndReencodesByteExact) {
  const Vector& v = GetParam();
  const auto dialect = load_dialect_file(test::data_path("dialects/" + v.id + ".toml"));
  const auto wire = from_hex(v.message.at("wire_hex").get<std::string>());
  ASSERT_EQ(wire.size(), v.message.at("wire_length").get<std::size_t>());
  MessageView msg;
  const auto r = decode(*dialect, wire, msg);
  if (const auto neg = kNegative.find(v.id); neg != kNegative.end()) {
    ASSERT_FALSE(r.has_value()) << v.id << " must be rejected";
    EXPECT_EQ(r.error().field, neg->second.first);
    EXPECT_EQ(r.error().code, neg->second.second);
    return;
  }
  ASSERT_TRUE(r.has_value()) << v.id << ": " << errc_name(r.error().code) << " field "
                             << r.error().field << " offset " << r.error().offset;
  EXPECT_EQ(*r, wire.size());
  const json& exp = v.message.at("expected");
  const auto mti = msg.mti_text();
  EXPECT_EQ(std::string(mti.begin(), mti.end()), exp.at("mti").get<std::string>());
  const auto& bitmaps = exp.at("bitmaps");
  ASSERT_EQ(msg.bitmap_count(), static_cast<int>(bitmaps.size()));
  for (std::size_t i = 0; i < bitmaps.size(); ++i) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx",
                  static_cast<unsigned long long>(msg.bitmap_words()[i]));  // NOLINT
    EXPECT_EQ(std::string(buf), bitmaps[i].get<std::string>()) << "bitmap " << i;
  }
  if (exp.contains("header_hex")) {
    EXPECT_EQ(to_hex(msg.header()), exp.at("header_hex").get<std::string>());
  }
  // Exactly the expected fields, with exactly the expected values.
  const json& fields = exp.at("fields");
  int present = 0;
  for (int de = 2; de <= kMaxField; ++de) {
    present += msg.has(de) ? 1 : 0;
  }
  EXPECT_EQ(present, static_cast<int>(fields.size()));
  for (const auto& [key, value] : fields.items()) {
    const int de = std::stoi(key);
    ASSERT_TRUE(msg.has(de)) << "DE " << de;
    EXPECT_EQ(vector_form(msg.field(de)), value.get<std::string>()) << v.id << " DE " << de;
  }
  // Composite subfields.
  const json subfields = v.message.value("expected_subfields", json::object());
  for (const auto& [key, sub] : subfields.items()) {
    const int de = std::stoi(key);
    CompositeView cv;
    const auto cr = decode_composite(msg, de, cv);
    ASSERT_TRUE(cr.has_value()) << "DE " << de << ": " << errc_name(cr.error().code);
    if (sub.contains("header_hex")) {
      EXPECT_EQ(to_hex(cv.header()), sub.at("header_hex").get<std::string>());
    }
    if (sub.contains("bitmap")) {
      const std::string bm = sub.at("bitmap").get<std::string>();
      char buf[17];
      std::snprintf(buf, sizeof buf, "%016llx",
                    static_cast<unsigned long long>(cv.bitmap()));  // NOLINT
      EXPECT_EQ(std::string(buf).substr(0, bm.size()), bm);
    }
    int count = 0;
    for (int s = 1; s <= kMaxSubfield; ++s) {
      count += cv.has(s) ? 1 : 0;
    }
    EXPECT_EQ(count, static_cast<int>(sub.at("fields").size()));
    for (const auto& [sk, sv] : sub.at("fields").items()) {
      const int s = std::stoi(sk);
      ASSERT_TRUE(cv.has(s)) << "DE " << de << "." << s;
      EXPECT_EQ(vector_form(cv.subfield(s)), sv.get<std::string>()) << "DE " << de << "." << s;
    }
  }
  // BER-TLV objects of DE 55.
  if (v.message.contains("expected_tlv")) {
    const FieldView f = msg.field(55);
    ASSERT_TRUE(f.present());
    TlvReader reader(f.wire, 55);
    std::size_t i = 0;
    const auto& tlvs = v.message.at("expected_tlv");
    TlvObject obj;
    while (true) {
      auto nr = reader.next(obj);
      ASSERT_TRUE(nr.has_value());
      if (!*nr) {
        break;
      }
      ASSERT_LT(i, tlvs.size());
      char tag[9];
      std::snprintf(tag, sizeof tag, "%X", obj.tag);
      EXPECT_EQ(std::string(tag), tlvs[i].at("tag").get<std::string>());
      EXPECT_EQ(obj.value.size(), tlvs[i].at("length").get<std::size_t>());
      EXPECT_EQ(to_hex(obj.value), tlvs[i].at("value_hex").get<std::string>());
      ++i;
    }
    EXPECT_EQ(i, tlvs.size());
  }
  // Re-encode from the expected values (canonical form) and from the decoded view.
  std::vector<std::vector<std::byte>> keep;
  MessageBuilder b(*dialect);
  b.reset(static_cast<std::uint16_t>(std::stoi(exp.at("mti").get<std::string>())));
  std::vector<std::byte> header;
  if (exp.contains("header_hex")) {
    header = from_hex(exp.at("header_hex").get<std::string>());
    b.set_header(header);
  }
  std::vector<std::string> texts;
  texts.reserve(fields.size());
  for (const auto& [key, value] : fields.items()) {
    const int de = std::stoi(key);
    if (dialect->field(de).type == ContentType::kB) {
      keep.push_back(from_hex(value.get<std::string>()));
      b.set_bytes(de, keep.back());
    } else {
      texts.push_back(value.get<std::string>());
      b.set_text(de, texts.back());
    }
  }
  std::vector<std::byte> out(wire.size() + 64);
  const auto er = b.encode(out);
  ASSERT_TRUE(er.has_value()) << errc_name(er.error().code) << " field " << er.error().field;
  out.resize(*er);
  EXPECT_EQ(to_hex(out), to_hex(wire)) << v.id << " re-encoded from values";

  MessageBuilder copy(*dialect);
  copy.reset(msg.mti());
  copy.set_header(msg.header());
  for (int de = 2; de <= kMaxField; ++de) {
    if (msg.has(de)) {
      copy.copy_from(msg, de);
    }
  }
  std::vector<std::byte> out2(wire.size() + 64);
  const auto er2 = copy.encode(out2);
  ASSERT_TRUE(er2.has_value());
  out2.resize(*er2);
  EXPECT_EQ(to_hex(out2), to_hex(wire)) << v.id << " re-encoded from the view";
}

INSTANTIATE_TEST_SUITE_P(Vectors, Conformance, ::testing::ValuesIn(load_vectors()),
                         [](const ::testing::TestParamInfo<Vector>& param_info) {
                           return param_info.param.id;
                         });

TEST(ConformanceSet, CoversEveryVectorMessage) {
  // 13 message files (v14 is a DE 55 value, tested in tlv_test) with their extra messages.
  EXPECT_EQ(load_vectors().size(), 20U);
}

}  // namespace
}  // namespace authswitch::iso8583
