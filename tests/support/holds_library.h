#pragma once
// Loads a holds library (limits::holds_library() by default) into a test's Redis through hiredis,
// for tests that call it directly (FCALL) rather than through a RedisPipeline.
// Thread-safety: one context per thread, as hiredis requires.

#include <stdexcept>
#include <string>

#include "limits/holds_script.h"
#include "tests/support/redis_server.h"

namespace authswitch::support {

// FUNCTION LOAD REPLACE of the library (holds_library(), or one make_holds_library built with
// velocity definitions); returns the function to FCALL. Throws std::runtime_error with Redis's
// answer when it did not load.
inline std::string load_holds(redisContext& ctx,
                              const limits::FunctionLibrary& l = limits::holds_library()) {
  const RedisReplyPtr r = redis_command(ctx, {"FUNCTION", "LOAD", "REPLACE", l.text});
  if (r->type != REDIS_REPLY_STRING || std::string(r->str, r->len) != l.library) {
    throw std::runtime_error(std::string("FUNCTION LOAD failed: ") +
                             (r->str != nullptr ? std::string(r->str, r->len) : "?"));
  }
  return std::string(l.function);
}

}  // namespace authswitch::support
