#include "limits/layout.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <initializer_list>

#include "base/hash.h"

namespace authswitch::limits {
namespace {

bool name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

std::string_view join(KeyBuffer& buf, std::initializer_list<std::string_view> parts) noexcept {
  std::size_t n = 0;
  for (const std::string_view p : parts) {
    if (p.size() > buf.size() - n) {
      return {};
    }
    std::memcpy(buf.data() + n, p.data(), p.size());
    n += p.size();
  }
  return {buf.data(), n};
}

}  // namespace

std::optional<Channel> parse_channel(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kChannelCount; ++i) {
    if (kChannelNames[i] == name) {
      return static_cast<Channel>(i);
    }
  }
  return std::nullopt;
}

std::int64_t& limit_at(ChannelLimits& l, std::size_t i) noexcept {
  AS_ASSERT(i < kLimitCount);
  std::int64_t* const fields[kLimitCount] = {&l.per_transaction_max_minor, &l.day_amount_max_minor,
                                             &l.day_count_max, &l.month_amount_max_minor,
                                             &l.month_count_max};
  return *fields[i];
}

std::int64_t limit_at(const ChannelLimits& l, std::size_t i) noexcept {
  return limit_at(const_cast<ChannelLimits&>(l),
                  i);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
}

bool valid_name(std::string_view s, std::size_t max) noexcept {
  return !s.empty() && s.size() <= max && std::all_of(s.begin(), s.end(), name_char);
}

std::string_view card_directory_key(std::string_view token, KeyBuffer& buf) noexcept {
  if (token.empty() || token.size() > kCardTokenMax) {
    return {};
  }
  return join(buf, {"as:{c:", token, "}"});
}

std::string_view account_cards_key(std::string_view account, KeyBuffer& buf) noexcept {
  if (account.empty() || account.size() > kAccountIdMax) {
    return {};
  }
  return join(buf, {"as:{a:", account, "}:cards"});
}

std::string_view profile_key(std::string_view name, KeyBuffer& buf) noexcept {
  if (name.empty() || name.size() > kProfileNameMax) {
    return {};
  }
  return join(buf, {"as:p:", name});
}

CardState parse_card_state(std::string_view s) noexcept {
  for (std::size_t i = 0; i < kCardStatuses.size(); ++i) {
    if (kCardStatuses[i] == s) {
      return static_cast<CardState>(i + 1);
    }
  }
  return CardState::kUnknown;
}

std::optional<std::size_t> parse_card_overrides(
    std::string_view text, std::span<CardOverrideRecord, kCardOverridesMax> out) noexcept {
  std::size_t n = 0;
  while (!text.empty()) {
    const std::size_t end = std::min(text.find(';'), text.size());
    const std::string_view entry = text.substr(0, end);
    text.remove_prefix(std::min(end + 1, text.size()));
    const std::size_t c1 = entry.find(',');
    const std::size_t c2 = c1 == std::string_view::npos ? c1 : entry.find(',', c1 + 1);
    if (c2 == std::string_view::npos || n == kCardOverridesMax) {
      return std::nullopt;
    }
    const std::string_view rule = entry.substr(0, c1);
    const std::string_view country = entry.substr(c1 + 1, c2 - c1 - 1);
    const std::string_view expires = entry.substr(c2 + 1);
    CardOverrideRecord r;
    const auto e = std::from_chars(expires.data(), expires.data() + expires.size(), r.expires_ms);
    if (rule.empty() || rule.size() > kRuleIdMax || country.size() > r.country.size() ||
        e.ec != std::errc() || e.ptr != expires.data() + expires.size()) {
      return std::nullopt;
    }
    r.rule_hash = base::fnv1a32(rule);
    std::copy(country.begin(), country.end(), r.country.begin());
    r.country_len = static_cast<std::uint8_t>(country.size());
    out[n++] = r;
  }
  return n;
}

base::Result<LimitProfile, ProfileFieldError> parse_profile_fields(
    std::span<const std::string_view> fields_and_values) noexcept {
  using Kind = ProfileFieldError::Kind;
  LimitProfile profile;
  std::array<std::array<bool, kLimitCount>, kChannelCount> seen{};
  for (std::size_t i = 0; i + 1 < fields_and_values.size(); i += 2) {
    const std::string_view field = fields_and_values[i];
    const std::string_view value = fields_and_values[i + 1];
    const std::size_t dot = field.find('.');
    const std::optional<Channel> ch =
        dot == std::string_view::npos ? std::nullopt : parse_channel(field.substr(0, dot));
    const auto* lim =
        ch ? std::find(kLimitFields.begin(), kLimitFields.end(), field.substr(dot + 1))
           : kLimitFields.end();
    if (lim == kLimitFields.end()) {
      return base::unexpected(ProfileFieldError{Kind::kUnknownField, 0, 0});
    }
    const auto c = static_cast<std::size_t>(*ch);
    const auto l = static_cast<std::size_t>(lim - kLimitFields.begin());
    std::int64_t v = 0;
    const auto r = std::from_chars(value.data(), value.data() + value.size(), v);
    if (r.ec != std::errc() || r.ptr != value.data() + value.size()) {
      return base::unexpected(ProfileFieldError{Kind::kNotInteger, c, l});
    }
    if (v < 0) {
      return base::unexpected(ProfileFieldError{Kind::kNegative, c, l});
    }
    limit_at(profile.channels[c], l) = v;
    seen[c][l] = true;
  }
  for (std::size_t c = 0; c < kChannelCount; ++c) {
    for (std::size_t l = 0; l < kLimitCount; ++l) {
      if (!seen[c][l]) {
        return base::unexpected(ProfileFieldError{Kind::kMissing, c, l});
      }
    }
  }
  return profile;
}

}  // namespace authswitch::limits
