/// \file
/// The umbrella header: every public layer of tessera. Include single headers
/// (tessera/nn/blocks.hpp, tessera/nn/attention.hpp, ...) instead where compile
/// time matters: this one pulls in every kernel, the GGUF reader and tokenizers.
#pragma once

#include "tessera/core/convert.hpp"
#include "tessera/core/error.hpp"
#include "tessera/core/half.hpp"
#include "tessera/core/parallel.hpp"
#include "tessera/core/quant_blocks.hpp"
#include "tessera/core/storage.hpp"
#include "tessera/core/tensor.hpp"

#include "tessera/backend/backend.hpp"
#include "tessera/backend/scalar/matmul.hpp"
#include "tessera/backend/scalar/norm.hpp"
#include "tessera/backend/scalar/rope.hpp"
#include "tessera/backend/simd/matmul.hpp"
#include "tessera/backend/simd/norm.hpp"
#include "tessera/backend/simd/rope.hpp"

#include "tessera/backend/eval.hpp"
#include "tessera/expr/elementwise.hpp"
#include "tessera/expr/reduce.hpp"
#include "tessera/kv/kv.hpp"
#include "tessera/models/weights.hpp"
#include "tessera/nn/attention.hpp"
#include "tessera/nn/positional.hpp"
#include "tessera/nn/weight.hpp"
#include "tessera/io/chat_template.hpp"
#include "tessera/io/gguf.hpp"
#include "tessera/io/tokenizer_gguf.hpp"
#include "tessera/models/llama_context.hpp"
#include "tessera/nn/blocks.hpp"
#include "tessera/nn/embedding.hpp"
#include "tessera/nn/linear.hpp"
#include "tessera/runtime/generator.hpp"
#include "tessera/sample/sampler.hpp"
