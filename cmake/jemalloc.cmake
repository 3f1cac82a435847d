# authswitch_link_jemalloc(<target>)
#
# Links jemalloc into an executable when AS_USE_JEMALLOC is ON and defines AS_HAVE_JEMALLOC=1
# on it. Libraries never link jemalloc (see STYLE.md, Layout). Sanitizer and fuzz builds
# leave it out because ASan/TSan replace the allocator themselves.
include_guard(GLOBAL)

function(authswitch_link_jemalloc target)
  if(NOT AS_USE_JEMALLOC)
    return()
  endif()
  if(AS_BUILD_FUZZ OR NOT AS_SANITIZE STREQUAL "")
    message(STATUS "authswitch: jemalloc left out of ${target} (sanitizer build)")
    return()
  endif()

  if(NOT TARGET authswitch::jemalloc)
    find_package(PkgConfig QUIET)
    if(PkgConfig_FOUND)
      pkg_check_modules(AS_JEMALLOC QUIET IMPORTED_TARGET GLOBAL jemalloc)
    endif()
    if(TARGET PkgConfig::AS_JEMALLOC)
      add_library(authswitch::jemalloc ALIAS PkgConfig::AS_JEMALLOC)
    else()
      find_library(AS_JEMALLOC_LIBRARY NAMES jemalloc REQUIRED)
      add_library(authswitch::jemalloc UNKNOWN IMPORTED GLOBAL)
      set_target_properties(authswitch::jemalloc PROPERTIES IMPORTED_LOCATION "${AS_JEMALLOC_LIBRARY}")
    endif()
    message(STATUS "authswitch: jemalloc found")
  endif()

  target_link_libraries(${target} PRIVATE authswitch::jemalloc)
  target_compile_definitions(${target} PRIVATE AS_HAVE_JEMALLOC=1)
endfunction()
