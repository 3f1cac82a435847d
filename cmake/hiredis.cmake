# hiredis (Debian libhiredis-dev, found through pkg-config). Code includes <hiredis/hiredis.h>:
# pkg-config's -I.../include/hiredis is left out so hiredis's read.h, sds.h and alloc.h can
# never shadow another header. Only tests/support and limits/ may link it (STYLE.md, Layout).
if(NOT TARGET authswitch::hiredis)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(AS_HIREDIS REQUIRED hiredis)
  find_library(AS_HIREDIS_LIBRARY NAMES hiredis HINTS ${AS_HIREDIS_LIBRARY_DIRS} REQUIRED)
  get_filename_component(_as_hiredis_include_root "${AS_HIREDIS_INCLUDEDIR}" DIRECTORY)
  add_library(authswitch::hiredis UNKNOWN IMPORTED GLOBAL)
  set_target_properties(authswitch::hiredis PROPERTIES
    IMPORTED_LOCATION "${AS_HIREDIS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${_as_hiredis_include_root}"
    INTERFACE_COMPILE_OPTIONS "${AS_HIREDIS_CFLAGS_OTHER}")
endif()
