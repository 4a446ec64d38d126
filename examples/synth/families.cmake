# The fixture synth/families, run as `cmake -P`: -DSYNTH=<tessera-synth> -DTOKENIZER=<gguf> -DDIR=<folder>.
# Writes DIR/<arch>.gguf for qwen2, qwen3, phi3, mixtral, qwen2moe, qwen3moe (shape tiny), gpt2 and bert (tiny-mha: they have as many
# KV heads as query heads), seeded f32 weights: the files tests/data/golden/synthetic-<arch> were made from.
if(NOT EXISTS "${TOKENIZER}")
  message("SKIPPED: ${TOKENIZER} is missing (run scripts/fetch-model)")
  return()
endif()
file(MAKE_DIRECTORY "${DIR}")
foreach(arch qwen2 qwen3 phi3 gpt2 mixtral qwen2moe qwen3moe bert)
  set(shape tiny)
  if(arch STREQUAL "gpt2" OR arch STREQUAL "bert")
    set(shape tiny-mha)
  endif()
  execute_process(COMMAND "${SYNTH}" --arch ${arch} --shape ${shape} --type f32 --seed 42 --tokenizer "${TOKENIZER}"
                          -o "${DIR}/${arch}.gguf"
    INPUT_FILE /dev/null RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "tessera-synth --arch ${arch}: exit '${rc}'\n${out}\n${err}")
  endif()
  message("${out}")
endforeach()
