// Hand-made malformed GGUF files, one per way a file can be broken: each must
// raise tessera::Error whose message names the file, the field at fault and
// its byte offset.
#include <catch2/catch.hpp>

#include "gguf_test_util.hpp"
#include "tessera/io/gguf.hpp"

using namespace tessera;
using namespace tessera::io;
using Catch::Contains;
using test::RawGguf;

namespace {

constexpr uint32_t kU32 = static_cast<uint32_t>(GgufValueType::u32);
constexpr uint32_t kString = static_cast<uint32_t>(GgufValueType::string);
constexpr uint32_t kArray = static_cast<uint32_t>(GgufValueType::array);
constexpr uint32_t kBool = static_cast<uint32_t>(GgufValueType::boolean);
constexpr uint32_t kU64 = static_cast<uint32_t>(GgufValueType::u64);

GgufFile load(const RawGguf& r) { return GgufFile::from_bytes(r.bytes, "bad.gguf"); }

std::string at_byte(size_t offset) { return " at byte " + std::to_string(offset) + ":"; }

// One tensor "w" of the given shape and type, data offset and data size (default: what the shape needs),
// after a header with no metadata: the tensor info starts at byte 24.
RawGguf one_tensor(const std::vector<int64_t>& shape, GgmlType type, uint64_t offset = 0, int64_t n_data = -1) {
  RawGguf r;
  r.header(1, 0);
  r.tensor_info("w", shape, type, offset).pad_to(kGgufDefaultAlignment);
  if (n_data < 0) {
    const TypeInfo ti = type_info(static_cast<uint32_t>(type));
    int64_t n = 1;
    for (int64_t e : shape) n *= e;
    n_data = static_cast<int64_t>(offset) + n / ti.block_size * static_cast<int64_t>(ti.type_size);
  }
  return r.zeros(static_cast<size_t>(n_data));
}

}  // namespace

TEST_CASE("malformed GGUF: header", "[io][gguf][malformed]") {
  SECTION("the hand-made baseline loads") {
    RawGguf r = one_tensor({32, 2}, GgmlType::f32);
    const GgufFile f = load(r);
    CHECK(f.tensor("w").n_bytes == 256);
  }
  SECTION("empty file") {
    REQUIRE_THROWS_WITH(load(RawGguf{}), Contains("bad.gguf: magic" + at_byte(0)) && Contains("truncated"));
  }
  SECTION("wrong magic") {
    RawGguf r;
    r.u32(0x46554746).u32(3).u64(0).u64(0);
    REQUIRE_THROWS_WITH(load(r), Contains("bad.gguf: magic" + at_byte(0)) && Contains("not a GGUF file"));
  }
  SECTION("GGUF v1: 32-bit counts, unsupported") {
    RawGguf r;
    r.header(0, 0, 1);
    REQUIRE_THROWS_WITH(load(r), Contains("version" + at_byte(4)) && Contains("v1"));
  }
  SECTION("version past 3") {
    RawGguf r;
    r.header(0, 0, 4);
    REQUIRE_THROWS_WITH(load(r), Contains("version" + at_byte(4)) && Contains("unsupported GGUF version 4"));
  }
  SECTION("a big-endian file") {
    RawGguf r;
    r.header(0, 0, 0x03000000);
    REQUIRE_THROWS_WITH(load(r), Contains("version" + at_byte(4)) && Contains("big-endian"));
  }
  SECTION("truncated header") {
    RawGguf r;
    r.header(0, 0);
    r.bytes.resize(12);
    REQUIRE_THROWS_WITH(load(r), Contains("tensor count" + at_byte(8)) && Contains("truncated"));
    r.header(0, 0);
    r.bytes.resize(20);
    REQUIRE_THROWS_WITH(load(r), Contains("metadata count" + at_byte(16)) && Contains("truncated"));
  }
  SECTION("tensor count absurd for the file size") {
    RawGguf r;
    r.header(uint64_t{1} << 60, 0).zeros(100);
    REQUIRE_THROWS_WITH(load(r), Contains("tensor count" + at_byte(8)) && Contains("cannot fit"));
  }
  SECTION("metadata count absurd for the file size") {
    RawGguf r;
    r.header(0, ~uint64_t{0}).zeros(100);
    REQUIRE_THROWS_WITH(load(r), Contains("metadata count" + at_byte(16)) && Contains("cannot fit"));
  }
}

TEST_CASE("malformed GGUF: metadata", "[io][gguf][malformed]") {
  RawGguf r;
  r.header(0, 1);
  SECTION("key cut short") {
    r.u64(20).zeros(8);  // 16 bytes left: past the count check (13 per entry), short of the key
    REQUIRE_THROWS_WITH(load(r), Contains("metadata key of entry #0" + at_byte(24)) && Contains("string length 20"));
  }
  SECTION("value cut short") {
    r.str("a.b").u32(kU32).u8(1);
    REQUIRE_THROWS_WITH(load(r), Contains("value of key 'a.b'" + at_byte(39)) && Contains("truncated"));
  }
  SECTION("string longer than the rest of the file") {
    r.str("k").u32(kString).u64(1000).zeros(10);
    REQUIRE_THROWS_WITH(load(r), Contains("value of key 'k'" + at_byte(37)) && Contains("string length 1000"));
    RawGguf huge;
    huge.header(0, 1).str("k").u32(kString).u64(~uint64_t{0}).zeros(10);
    REQUIRE_THROWS_WITH(load(huge), Contains("value of key 'k'" + at_byte(37)) && Contains("string length"));
  }
  SECTION("unknown value type") {
    r.str("k").u32(13).u32(0);
    REQUIRE_THROWS_WITH(load(r), Contains("value type of key 'k'" + at_byte(33)) && Contains("unknown value type 13"));
  }
  SECTION("unknown array element type") {
    r.str("k").u32(kArray).u32(99).u64(0);
    REQUIRE_THROWS_WITH(load(r), Contains("array element type of key 'k'" + at_byte(37)) && Contains("99"));
  }
  SECTION("array length times element size overflows") {
    r.str("k").u32(kArray).u32(kU64).u64(uint64_t{1} << 61).zeros(16);  // 2^61 * 8 bytes = 2^64
    REQUIRE_THROWS_WITH(load(r), Contains("array length of key 'k'" + at_byte(41)) && Contains("cannot fit"));
  }
  SECTION("array of strings longer than the file") {
    r.str("k").u32(kArray).u32(kString).u64(1000).zeros(100);
    REQUIRE_THROWS_WITH(load(r), Contains("array length of key 'k'" + at_byte(41)) && Contains("1000 elements"));
  }
  SECTION("array of arrays: 16 levels parse, 17 are refused") {
    auto nested = [](int levels) {
      RawGguf n;
      n.header(0, 1).str("k").u32(kArray);
      for (int i = 1; i < levels; ++i) n.u32(kArray).u64(1);
      n.u32(kU32).u64(1).u32(42);
      return n;
    };
    const GgufFile f = load(nested(kGgufMaxArrayDepth));
    const GgufValue* v = f.meta().find("k");
    for (int i = 1; i < kGgufMaxArrayDepth; ++i) v = &v->array().items<GgufValue>().at(0);
    CHECK(v->array().items<uint32_t>() == std::vector<uint32_t>{42});
    REQUIRE_THROWS_WITH(load(nested(kGgufMaxArrayDepth + 1)), Contains("array of key 'k'") && Contains("nested deeper"));
  }
  SECTION("bool other than 0 or 1") {
    r.str("k").u32(kBool).u8(2);
    REQUIRE_THROWS_WITH(load(r), Contains("value of key 'k'" + at_byte(37)) && Contains("bool byte is 2"));
  }
  SECTION("duplicate keys") {
    RawGguf d;
    d.header(0, 2).kv_u32("a", 1);
    const size_t second = d.size();
    d.kv_u32("a", 2);
    REQUIRE_THROWS_WITH(load(d), Contains("key 'a'" + at_byte(second)) && Contains("duplicate metadata key"));
  }
  SECTION("alignment not a power of two") {
    for (const uint32_t bad : {48u, 0u, 33u}) {
      RawGguf a;
      a.header(0, 1).kv_u32("general.alignment", bad);
      REQUIRE_THROWS_WITH(load(a), Contains("general.alignment" + at_byte(53)) && Contains("not a power of two"));
    }
    RawGguf s;
    s.header(0, 1).kv_str("general.alignment", "32");
    REQUIRE_THROWS_WITH(load(s), Contains("general.alignment" + at_byte(53)) && Contains("string"));
  }
}

TEST_CASE("malformed GGUF: tensor infos and data", "[io][gguf][malformed]") {
  const size_t dims_at = 24 + 8 + 1;  // after the header and the name "w"
  SECTION("dimension count past 4, or 0") {
    REQUIRE_THROWS_WITH(load(one_tensor({1, 1, 1, 1, 1}, GgmlType::f32)),
                        Contains("dimension count of tensor 'w'" + at_byte(dims_at)) && Contains("5 dimensions"));
    REQUIRE_THROWS_WITH(load(one_tensor({}, GgmlType::f32)),
                        Contains("dimension count of tensor 'w'" + at_byte(dims_at)) && Contains("0 dimensions"));
  }
  SECTION("negative dimension") {
    REQUIRE_THROWS_WITH(load(one_tensor({32, -2}, GgmlType::f32, 0, 0)),
                        Contains("shape of tensor 'w'" + at_byte(dims_at)) && Contains("negative"));
  }
  SECTION("element count overflows int64") {
    const int64_t big = int64_t{1} << 32;
    REQUIRE_THROWS_WITH(load(one_tensor({big, big}, GgmlType::f32, 0, 0)),
                        Contains("shape of tensor 'w'" + at_byte(dims_at)) && Contains("overflows int64"));
  }
  SECTION("byte size overflows") {
    const int64_t big = int64_t{1} << 31;  // 2^62 f32 elements: 2^64 bytes
    REQUIRE_THROWS_WITH(load(one_tensor({big, big}, GgmlType::f32, 0, 0)),
                        Contains("shape of tensor 'w'") && Contains("byte size overflows"));
  }
  SECTION("unknown tensor type id") {
    REQUIRE_THROWS_WITH(load(one_tensor({32}, static_cast<GgmlType>(99), 0, 0)),
                        Contains("type of tensor 'w'" + at_byte(dims_at + 4 + 8)) &&
                            Contains("unknown ggml type id 99"));
  }
  SECTION("row length not a multiple of the block size") {
    REQUIRE_THROWS_WITH(load(one_tensor({33, 2}, GgmlType::q4_0, 0, 64)),
                        Contains("shape of tensor 'w'" + at_byte(dims_at)) && Contains("row length 33") &&
                            Contains("q4_0 block size 32"));
  }
  SECTION("tensor info cut short") {
    // A long name keeps the cut file above the smallest tensor info (32 bytes), past the count check.
    const std::string name(40, 'n');
    RawGguf r;
    r.header(1, 0).tensor_info(name, {32, 2}, GgmlType::f32, 0);
    const size_t type_at = 24 + 8 + name.size() + 4 + 16;
    r.bytes.resize(type_at + 2);
    REQUIRE_THROWS_WITH(load(r), Contains("type of tensor '" + name + "'" + at_byte(type_at)) && Contains("truncated"));
    r.bytes.resize(24 + 8 + 30);
    REQUIRE_THROWS_WITH(load(r), Contains("tensor name of tensor info #0" + at_byte(24)) && Contains("string length 40"));
  }
  SECTION("tensor data cut short, or reaching past the end") {
    RawGguf r = one_tensor({32, 2}, GgmlType::f32);
    r.bytes.resize(r.size() - 4);
    const size_t offset_at = dims_at + 4 + 16 + 4;
    REQUIRE_THROWS_WITH(load(r), Contains("data offset of tensor 'w'" + at_byte(offset_at)) &&
                                     Contains("256 bytes") && Contains("past the end"));
    REQUIRE_THROWS_WITH(load(one_tensor({32, 2}, GgmlType::f32, 64, 256)),
                        Contains("data offset of tensor 'w'" + at_byte(offset_at)) && Contains("past the end"));
    RawGguf no_data;
    no_data.header(1, 0).tensor_info("w", {32}, GgmlType::f32, 0);
    REQUIRE_THROWS_WITH(load(no_data), Contains("tensor data section") && Contains("past the end"));
  }
  SECTION("data offset not aligned") {
    REQUIRE_THROWS_WITH(load(one_tensor({32}, GgmlType::f32, 16)),
                        Contains("data offset of tensor 'w'") && Contains("16 is not a multiple of general.alignment 32"));
  }
  SECTION("duplicate tensor names") {
    RawGguf r;
    r.header(2, 0).tensor_info("w", {32}, GgmlType::f32, 0);
    const size_t second = r.size();
    r.tensor_info("w", {32}, GgmlType::f32, 128).pad_to(32).zeros(256);
    REQUIRE_THROWS_WITH(load(r), Contains("tensor 'w'" + at_byte(second)) && Contains("duplicate tensor name"));
  }
  SECTION("overlapping tensors") {
    RawGguf r;
    r.header(2, 0).tensor_info("a", {32}, GgmlType::f32, 0).tensor_info("b", {32}, GgmlType::f32, 96);
    r.pad_to(32).zeros(256);
    REQUIRE_THROWS_WITH(load(r), Contains("data offset of tensor 'b'") && Contains("overlaps tensor 'a'"));
  }
  SECTION("a view of data the file's alignment leaves misaligned for its type") {
    RawGguf r;
    r.header(1, 1).kv_u32("general.alignment", 1);
    const size_t data_offset = r.size() + 8 + 1 + 4 + 8 + 4 + 8;  // after the info of "w"
    const uint64_t offset = (4 - data_offset % 4) % 4 + 1;       // data at an odd byte
    r.tensor_info("w", {4}, GgmlType::f32, offset).zeros(offset + 16);
    const GgufFile f = load(r);  // legal: only a typed view needs f32 alignment
    CHECK(f.tensor("w").n_bytes == 16);
    REQUIRE_THROWS_WITH(f.view1d<float>("w"), Contains("tensor 'w'") && Contains("not aligned for f32"));
  }
}
