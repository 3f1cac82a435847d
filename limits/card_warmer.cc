#include "limits/card_warmer.h"

#include <array>
#include <stdexcept>
#include <string_view>

#include "base/assert.h"

namespace authswitch::limits {

namespace {

// as:{c:<token>} (limits/layout.h), matched by SCAN.
constexpr std::string_view kCardKeyPrefix = "as:{c:";
constexpr std::string_view kCardKeyPattern = "as:{c:*";

}  // namespace

CardWarmer::CardWarmer(RedisPipeline& pipeline, CardDirectory& directory, Options options)
    : pipeline_(pipeline),
      directory_(directory),
      options_(options),
      count_text_(std::to_string(options.scan_count)) {
  if (options_.scan_count == 0 || options_.max_loads == 0) {
    throw std::invalid_argument("CardWarmer: scan_count and max_loads must be at least 1");
  }
  keys_.reserve(4 * options_.scan_count);
  cursor_.reserve(32);
}

CardWarmer::~CardWarmer() { AS_ASSERT(!scan_in_flight_ && loads_in_flight_ == 0); }

void CardWarmer::restart() noexcept {
  // A SCAN or loads of the previous sync still in flight complete into this pass: harmless
  // (loads go through the directory, which decides what it caches).
  sync_seen_ = directory_.stats().resyncs;
  cursor_.assign("0");
  keys_.clear();
  next_key_ = 0;
  scan_finished_ = false;
  done_ = false;
  retry_at_ = {};
}

void CardWarmer::finish() noexcept {
  done_ = true;
  ++stats_.passes;
  keys_.clear();
  next_key_ = 0;
}

void CardWarmer::on_tick(Clock::time_point now) noexcept {
  now_ = now;
  if (!directory_.ready()) {
    return;
  }
  if (directory_.stats().resyncs != sync_seen_) {
    restart();
  }
  if (done_) {
    return;
  }
  // Room left in the cache, counting the loads in flight: a warm-up never evicts.
  const std::size_t cached = directory_.size();
  const std::size_t room = cached >= directory_.capacity() ? 0 : directory_.capacity() - cached;
  if (room == 0 && loads_in_flight_ == 0) {
    finish();  // the cache is full: the rest loads on demand
    return;
  }
  while (next_key_ < keys_.size() && loads_in_flight_ < options_.max_loads &&
         loads_in_flight_ < room) {
    const PanToken& token = keys_[next_key_];
    if (directory_.load(token, *this, now + options_.call_timeout)) {
      break;  // the directory or the pipeline is full: the next tick goes on
    }
    ++next_key_;
    ++loads_in_flight_;
  }
  if (next_key_ < keys_.size() || scan_in_flight_ || loads_in_flight_ >= room) {
    return;
  }
  keys_.clear();
  next_key_ = 0;
  if (scan_finished_) {
    if (loads_in_flight_ == 0) {
      finish();
    }
    return;
  }
  if (now < retry_at_) {
    return;
  }
  const std::array<std::string_view, 6> args = {"SCAN",          cursor_, "MATCH",
                                                kCardKeyPattern, "COUNT", count_text_};
  if (!pipeline_.submit(args, *this, now + options_.call_timeout)) {
    scan_in_flight_ = true;
  }
}

void CardWarmer::on_reply(const Reply& reply) noexcept {
  scan_in_flight_ = false;
  ++stats_.scans;
  if (reply.type != Reply::Type::kArray || reply.elements.size() != 2 ||
      reply.elements[0].type != Reply::Type::kString ||
      reply.elements[1].type != Reply::Type::kArray) {
    ++stats_.scan_errors;
    retry_at_ = now_ + options_.retry_after;
    return;
  }
  for (const Reply& k : reply.elements[1].elements) {
    if (k.type != Reply::Type::kString || !k.str.starts_with(kCardKeyPrefix) ||
        !k.str.ends_with('}')) {
      continue;
    }
    const std::string_view text =
        k.str.substr(kCardKeyPrefix.size(), k.str.size() - kCardKeyPrefix.size() - 1);
    if (const auto token = PanToken::parse(text)) {
      keys_.push_back(*token);
      ++stats_.keys;
    }
  }
  cursor_.assign(reply.elements[0].str);
  scan_finished_ = cursor_ == "0";
}

void CardWarmer::on_error(ClientErrc /*errc*/, std::string_view /*message*/) noexcept {
  scan_in_flight_ = false;
  ++stats_.scan_errors;
  retry_at_ = now_ + options_.retry_after;  // again from the same cursor
}

void CardWarmer::on_card_loaded(const CardLoadResult& result) noexcept {
  AS_ASSERT(loads_in_flight_ > 0);
  --loads_in_flight_;
  if (result.status == CardStatus::kFound) {
    ++stats_.loaded;
  } else {
    ++stats_.load_failures;
  }
}

}  // namespace authswitch::limits
