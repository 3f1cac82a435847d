#pragma once
// Loading dialect files (TOML) into immutable Dialect specs, and the dialects shipped with the
// codec (iso8583/dialects/*.toml, embedded into the library at build time).
//
// Loading happens at start-up or on an explicit reload, never per message, so it reports
// problems by throwing DialectError with the source name, line and key, e.g.
// "iso87-ascii.toml:41: fields.2.max: max length 100 does not fit a 2-digit length prefix".
// Thread-safety: builtin_dialect() is safe from any thread (the built-ins are parsed once);
// a returned Dialect is read-only.

#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "iso8583/spec.h"

namespace authswitch::iso8583 {

class DialectError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct EmbeddedDialect {
  std::string_view name;
  std::string_view toml;
};

// The shipped dialect files, by name (generated from iso8583/dialects/ at build time).
std::span<const EmbeddedDialect> embedded_dialects() noexcept;

// Parses and compiles one dialect. `source_name` is used in error messages.
std::unique_ptr<Dialect> load_dialect(std::string_view toml_text, std::string_view source_name);
std::unique_ptr<Dialect> load_dialect_file(const std::string& path);

// A shipped dialect by name; throws std::out_of_range when there is none of that name.
const Dialect& builtin_dialect(std::string_view name);
std::vector<std::string_view> builtin_dialect_names();

// A shipped dialect by name, or a dialect file when `name_or_path` ends in ".toml". Loaded
// files are kept for the life of the process. Throws DialectError or std::out_of_range.
const Dialect& find_dialect(std::string_view name_or_path);

}  // namespace authswitch::iso8583
