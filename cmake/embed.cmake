# authswitch_embed_files(<output.cc> INCLUDE <header> NAMESPACE <ns> TYPE <struct>
#                        FUNCTION <name> COMMENT <text> INPUTS <file>...)
#
# Generates <output.cc>, defining `std::span<const TYPE> NAMESPACE::FUNCTION() noexcept` over
# the INPUTS embedded verbatim (see embed_files.cmake). Editing an input regenerates it.
include_guard(GLOBAL)

function(authswitch_embed_files output)
  cmake_parse_arguments(PARSE_ARGV 1 E "" "INCLUDE;NAMESPACE;TYPE;FUNCTION;COMMENT" "INPUTS")
  # '|'-separated: a ';' would split the -D argument on the command line.
  string(REPLACE ";" "|" _inputs "${E_INPUTS}")
  add_custom_command(
    OUTPUT ${output}
    COMMAND ${CMAKE_COMMAND}
            -DINPUTS=${_inputs}
            -DOUTPUT=${output}
            -DINCLUDE=${E_INCLUDE}
            -DNAMESPACE=${E_NAMESPACE}
            -DTYPE=${E_TYPE}
            -DFUNCTION=${E_FUNCTION}
            -P ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    DEPENDS ${E_INPUTS} ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    COMMENT "${E_COMMENT}"
    VERBATIM)
endfunction()
