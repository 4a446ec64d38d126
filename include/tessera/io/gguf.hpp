/// \file
/// GGUF v2/v3, read through mmap and written: metadata values (gguf_value.hpp),
/// the validating reader with zero-copy tensor views (gguf_reader.hpp, parsing
/// through gguf_cursor.hpp), and the writer (gguf_writer.hpp). See docs/io-gguf.md.
#pragma once

#include "tessera/io/gguf_value.hpp"
#include "tessera/io/gguf_reader.hpp"
#include "tessera/io/gguf_writer.hpp"
