#pragma once
// Scenarios: send/expect scripts that check one flow of the switch end to end, one file per
// scenario (QuickFIX acceptance-test style), in simulators/netsim/scenarios/*.scn (issue 6).
//
// The line format (documented for users at the top of every shipped file and in the README):
//
//   # comment                       blank lines and comments are ignored
//   dialect NAME                    the shipped dialect the scenario is written for, run in
//                                   it whatever --dialect says (without: an ISO 8583:1987
//                                   scenario, for any 1987 dialect)
//   profile NAME pos=T/DA/DN/MA/MN cnp=T/DA/DN/MA/MN atm=T/DA/DN/MA/MN
//                                   a limit profile: per-transaction, day amount, day count,
//                                   month amount, month count (minor units, counts)
//   account NAME balance=MINOR [currency=840]
//   card NAME account=ACCOUNT [status=active] [expiry=YYMM|expired] [profile=NAME]
//   card NAME unknown               a PAN that is never imported
//   send LABEL MTI [card=NAME] [same=LABEL] [DE=VALUE ...]
//   expect MTI [DE=VALUE ...] [available=MINOR] [ledger=MINOR]
//   balance ACCOUNT [balance=MINOR] [held=MINOR] [available=MINOR]
//
// Setup lines (profile, account, card) come before the first send. Accounts and PANs are made
// fresh per run (account "s<run>-NAME", PANs from a test BIN and a random run number), and
// imported with authswitch-admin before the first message, so runs never collide. Cards use
// the profile "scn-default" (the shipped default limits) unless they name one.
//
// send: netsim fills DE 7 (now), 11 (a fresh STAN), 12, 13, 37 (fresh), 32, 41, 42, 43, 49
// (840), and for 0100/0200 DE 3 (000000), 18 (5411), 22 (051), 25 (00); `card=NAME` sets DE 2
// and DE 14 (the card's PAN and expiry); `same=LABEL` starts from every field of an earlier
// send (a retransmission or a duplicate key); then DE=VALUE sets or replaces field DE (a
// number 2..128), `DE=-` removes it. Values: text as it goes on the wire, or
//   90=@LABEL          DE 90, original data elements of an earlier send (MTI, STAN, DE 7, DE 32)
//   95=remaining:MINOR DE 95, replacement amounts (what a partial reversal leaves standing)
// An 0800 gets DE 7, 11 and whatever the line gives (70=001 sign-on, 70=301 echo).
// These are ISO 8583:1987 formats: scenarios run in the 1987 dialects (any framing). In a
// 1993 dialect (`dialect iso93-ebcdic`): MTIs 1xxx, DE 12 is YYMMDDhhmmss, DE 22 the
// point-of-service data code 510101511001, no DE 13 or DE 25, an 1804 carries DE 24 (the
// function code) from its line; 90=@LABEL and 95=remaining: are 1987 formats and do not apply.
//
// expect: the answer to the send before it (matched by MTI class, DE 11, 41 and 37) within
// the timeout. DE=VALUE: the field's text equals VALUE, or one of `A|B|C` (DE 39 in a 1993
// dialect: a two-character 1987 code stands for its action code, iso8583/action_codes.h);
// `present`, `absent`; `@LABEL` the same text as that field of the answer to send LABEL (DE 38 of a
// retransmission). available= and ledger= check DE 54's amount types 02 and 01.
//
// balance: `authswitch-admin account show` of the account after the messages so far.
//
// Thread-safety: parsing is pure; run_scenario runs one io_context on the calling thread.

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "simulators/netsim/link.h"

namespace authswitch::netsim {

// A parse error: what() is "FILE:LINE: reason".
class ScenarioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ScenarioProfile {
  std::string name;
  // pos, cnp, atm; each per_txn, day_amount, day_count, month_amount, month_count.
  std::array<std::array<std::int64_t, 5>, 3> limits{};
};

struct ScenarioAccount {
  std::string name;
  std::int64_t balance_minor = 0;
  std::string currency = "840";
};

struct ScenarioCard {
  std::string name;
  std::string account;  // empty for an unknown card
  std::string status = "active";
  std::string expiry;   // YYMM; empty: two years from now; "expired": last year
  std::string profile;  // empty: scn-default
  bool unknown = false;
};

// One field value of a send or expect line.
struct StepField {
  int de = 0;
  std::string value;  // text, "-", "@LABEL", "remaining:N", "present", "absent", "A|B"
};

struct ScenarioStep {
  enum class Kind : std::uint8_t { kSend, kExpect, kBalance };
  Kind kind = Kind::kSend;
  int line = 0;
  std::string label;  // send: its label; balance: the account
  std::uint16_t mti = 0;
  std::string card;  // send: card=NAME
  std::string same;  // send: same=LABEL
  std::vector<StepField> fields;
  // expect: DE 54 amounts; balance: balance, held, available. -1: not checked.
  std::int64_t available = -1, ledger = -1, held = -1, balance = -1;
};

struct Scenario {
  std::string file;     // for messages
  std::string dialect;  // `dialect NAME`: the dialect it is written for; empty: any 1987 one
  std::vector<ScenarioProfile> profiles;
  std::vector<ScenarioAccount> accounts;
  std::vector<ScenarioCard> cards;
  std::vector<ScenarioStep> steps;
};

// Parses a scenario text; `file` names it in errors. Throws ScenarioError ("FILE:LINE: ...").
[[nodiscard]] Scenario parse_scenario(const std::string& text, const std::string& file);
[[nodiscard]] Scenario load_scenario(const std::string& path);

struct ScenarioRunOptions {
  LinkSetOptions links;                      // connections is forced to 1
  std::string redis;                         // HOST:PORT for authswitch-admin
  std::string admin;                         // the authswitch-admin binary
  std::chrono::milliseconds timeout{5'000};  // per expect
  std::string work_dir;                      // for the CSV files; empty: a temporary folder
};

struct ScenarioResult {
  std::string file;
  bool passed = false;
  std::vector<std::string> failures;  // "FILE:LINE: what" (never a full PAN)
  std::uint32_t steps_run = 0;
  double seconds = 0;
};

// Imports the scenario's cards and runs its steps against the switch. Never throws for a
// failing check (it is in `failures`); throws std::runtime_error when it cannot run at all.
[[nodiscard]] ScenarioResult run_scenario(const Scenario& s, const ScenarioRunOptions& options);

// Runs a program and collects its standard output (stderr is passed through). Returns the
// exit status (-1 if it could not run).
int run_capture(const std::vector<std::string>& argv, std::string& output);

}  // namespace authswitch::netsim
