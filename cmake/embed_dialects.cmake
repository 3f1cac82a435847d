# Script mode: cmake -DINPUTS=a.toml|b.toml -DOUTPUT=dialects_embedded.cc -P embed_dialects.cmake
#
# Writes a C++ source that defines authswitch::iso8583::embedded_dialects() over every input
# TOML file, each embedded verbatim as a raw string literal named after the file stem.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED INPUTS OR NOT DEFINED OUTPUT)
  message(FATAL_ERROR "embed_dialects.cmake: INPUTS and OUTPUT are required")
endif()
string(REPLACE "|" ";" _inputs "${INPUTS}")
list(LENGTH _inputs _count)
if(_count EQUAL 0)
  message(FATAL_ERROR "embed_dialects.cmake: no dialect files given")
endif()

# Raw-string delimiters are limited to 16 characters by the standard.
set(_delim "authswitch_toml")

set(_out "// Generated from iso8583/dialects/*.toml by cmake/embed_dialects.cmake; do not edit.\n")
string(APPEND _out "#include \"iso8583/dialect_loader.h\"\n\n")
string(APPEND _out "#include <array>\n#include <span>\n\n")
string(APPEND _out "namespace authswitch::iso8583 {\nnamespace {\n\n")
string(APPEND _out "constexpr std::array<EmbeddedDialect, ${_count}> kEmbedded{{\n")
foreach(_file IN LISTS _inputs)
  if(NOT EXISTS "${_file}")
    message(FATAL_ERROR "embed_dialects.cmake: missing dialect file ${_file}")
  endif()
  # The dialect name is the file stem (NAME_WLE: everything before the last dot).
  get_filename_component(_name "${_file}" NAME_WLE)
  file(READ "${_file}" _content)
  string(FIND "${_content}" ")${_delim}\"" _clash)
  if(NOT _clash EQUAL -1)
    message(FATAL_ERROR "embed_dialects.cmake: ${_file} contains the raw-string delimiter")
  endif()
  string(APPEND _out "    {\"${_name}\", R\"${_delim}(${_content})${_delim}\"},\n")
endforeach()
string(APPEND _out "}};\n\n}  // namespace\n\n")
string(APPEND _out "std::span<const EmbeddedDialect> embedded_dialects() noexcept { return kEmbedded; }\n\n")
string(APPEND _out "}  // namespace authswitch::iso8583\n")

# Only touch the output when it changes, so an unrelated rerun does not force a rebuild.
set(_tmp "${OUTPUT}.tmp")
file(WRITE "${_tmp}" "${_out}")
file(COPY_FILE "${_tmp}" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${_tmp}")
