# One CTest case of tessera-llama, run as `cmake -P`:
#   -DEXE=<tessera-llama> -DARGS=<;-list> -DEXPECT=ok|error -DREGEX=<regex> [-DNEEDS_MODEL=<path>]
# ok:    exit 0 and REGEX found in stderr (where the stats go).
# error: exit status exactly 1 (a signal or abort reads as a crash, not as an error) and stderr exactly
#        one line, "error: ...", matching REGEX.
# PASS_REGULAR_EXPRESSION alone ignores the exit status, and WILL_FAIL cannot tell a clean error exit
# from a crash, hence this script. When NEEDS_MODEL is given and absent it prints "SKIPPED: ..." (the
# test's SKIP_REGULAR_EXPRESSION) instead of running.
if(DEFINED NEEDS_MODEL AND NOT EXISTS "${NEEDS_MODEL}")
  message("SKIPPED: ${NEEDS_MODEL} is missing (run scripts/fetch-model)")
  return()
endif()
string(REPLACE "|" ";" args "${ARGS}")  # the CMakeLists joins the arguments with '|'
execute_process(COMMAND "${EXE}" ${args} INPUT_FILE /dev/null
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
# ok: exit 0; error: exit 1 with exactly one "error: ..." line. Either way stderr must match REGEX.
if(EXPECT STREQUAL "ok")
  set(want_rc 0)
else()
  set(want_rc 1)
endif()
if(NOT rc STREQUAL "${want_rc}")
  message(FATAL_ERROR "expected exit ${want_rc}, got '${rc}'\nstderr:\n${err}")
endif()
if(EXPECT STREQUAL "error" AND NOT err MATCHES "^error: [^\n]*\n$")
  message(FATAL_ERROR "stderr is not one 'error: ...' line:\n${err}")
endif()
if(NOT err MATCHES "${REGEX}")
  message(FATAL_ERROR "stderr does not match '${REGEX}':\n${err}")
endif()
message("ok: ${err}")
