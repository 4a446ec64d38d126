# One CTest case of tessera-synth, run as `cmake -P`:
#   -DSYNTH=<tessera-synth> -DLLAMA=<tessera-llama> -DTOKENIZER=<gguf> -DSHAPE=<name> -DTYPE=<type> -DOUT=<gguf>
# Writes OUT (exit 0 and the summary line on stdout), then runs `tessera-llama -m OUT -p Hello -n 8`, which
# must exit 0 and print its statistics line. Prints "SKIPPED: ..." (the test's SKIP_REGULAR_EXPRESSION)
# when TOKENIZER, the default model, is absent.
if(NOT EXISTS "${TOKENIZER}")
  message("SKIPPED: ${TOKENIZER} is missing (run scripts/fetch-model)")
  return()
endif()
file(REMOVE "${OUT}")
execute_process(COMMAND "${SYNTH}" --shape ${SHAPE} --type ${TYPE} --tokenizer "${TOKENIZER}" -o "${OUT}"
  INPUT_FILE /dev/null RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "tessera-synth: expected exit 0, got '${rc}'\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(NOT out MATCHES "tessera-synth: ${SHAPE} ${TYPE}, [0-9.]+ B parameters .* GiB written to ")
  message(FATAL_ERROR "tessera-synth: no summary line on stdout:\n${out}\nstderr:\n${err}")
endif()
message("${out}")
execute_process(COMMAND "${LLAMA}" -m "${OUT}" -p Hello -n 8 --temp 0
  INPUT_FILE /dev/null RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "tessera-llama: expected exit 0, got '${rc}'\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(NOT err MATCHES "decode: [0-9.]+ tok/s \\([1-9][0-9]* tokens\\)")
  message(FATAL_ERROR "tessera-llama: no decode statistics in stderr:\n${err}")
endif()
message("ok: ${out}${err}")
