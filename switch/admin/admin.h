#pragma once
// The commands of authswitch-admin, the operator's tool for the Redis data model of
// limits/layout.h and limits/holds_script.h: importing limit profiles and a card portfolio,
// showing accounts, holds, cards and profiles, blocking and unblocking cards, and manual
// credits and debits through the holds script's `adjust` operation.
//
// Each command writes its result to `out` and its problems to `err`, and returns the process
// exit status: kExitOk, kExitRuntime (unknown account or card, a refused change, a declined
// adjustment) or kExitBadInput (a bad argument or input file: nothing was changed). I/O errors
// and Redis error replies throw RedisError (switch/admin/redis_io.h), also kExitRuntime.
// No PAN is ever written to `out`, `err` or Redis: cards are named by masked PAN or row number.
//
// Ownership: Admin borrows the Redis context and the streams; they must outlive it.
// Thread-safety: none; one thread runs one Admin.

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>

#include <hiredis/hiredis.h>

#include "limits/pan_token.h"
#include "switch/admin/portfolio.h"
#include "switch/admin/redis_io.h"

namespace authswitch::admin {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitBadInput = 2;

// The replay window of `adjust` calls: a repeated --txn within it gets the first answer.
inline constexpr std::int64_t kAdjustReplayWindowMs = 24LL * 3600 * 1000;
// More changed cards than this in one import are announced as one "cards *" entry.
inline constexpr std::size_t kCardChangesMax = 1000;

struct ImportOptions {
  unsigned tokenize_threads = 0;      // 0: one per core
  std::size_t batch_commands = 4096;  // commands per pipelined batch
  std::size_t probe_keys = 512;       // keys per multi-key EXISTS of the pre-write checks
};

class Admin {
 public:
  // `address` ("host:port") names the server in messages.
  Admin(redisContext& ctx, std::string address, std::ostream& out, std::ostream& err);
  Admin(const Admin&) = delete;
  Admin& operator=(const Admin&) = delete;

  // import profiles: the CSV `text` (named `file_name` in messages).
  int import_profiles(std::string_view file_name, std::string_view text);
  // import cards: validates the whole file, then checks it against Redis, then writes.
  int import_cards(std::string_view file_name, std::string_view text, const limits::TokenKey& key,
                   const ImportOptions& options = {});

  int show_account(std::string_view id);
  // Pending holds, or with `all` every record of the account with its state.
  int list_holds(std::string_view id, bool all);

  int show_card(std::string_view pan, const limits::TokenKey& key);
  // card override: do not apply fraud rule `rule` to the card for `days` days, in `country`
  // only when given (risk::CardOverride); or with `clear`, end one rule's overrides (or all).
  // At most limits::kCardOverridesMax run at once; expired ones are dropped on every change.
  // Announced on as:changes so every switch's cache reloads the card.
  struct OverrideChange {
    std::string rule;
    std::string country;
    std::int64_t days = 0;
    bool clear = false;
  };
  int set_card_override(std::string_view pan, const limits::TokenKey& key, const OverrideChange& c,
                        std::int64_t now_ms);

  // block: active -> blocked. unblock: blocked -> active. Other states are refused.
  int set_card_blocked(std::string_view pan, bool blocked, const limits::TokenKey& key);

  // A manual credit (amount > 0) or debit (amount < 0) of `amount_minor` in the account's
  // currency, under transaction key `txn` (a replay of it changes nothing).
  int adjust_balance(std::string_view id, std::int64_t amount_minor, std::string_view txn,
                     std::int64_t now_ms);

  int show_profile(std::string_view name);
  int list_profiles();

 private:
  struct CardLookup;
  // kExitOk with `found` filled, or the exit status after a message on err_.
  [[nodiscard]] int find_card(std::string_view pan, const limits::TokenKey& key, CardLookup& found);
  int report(std::string_view file_name, const InputErrors& errors);

  RedisSession redis_;
  std::ostream& out_;
  std::ostream& err_;
};

}  // namespace authswitch::admin
