// Tensors and views: shapes, strides, slicing, transposes, reshape,
// contiguous copies, bounds checks, and mmap'd storage: errors, and views at
// offsets past 4 GiB of a sparse 5 GiB file.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "tessera/core/storage.hpp"
#include "tessera/core/tensor.hpp"

using namespace tessera;

namespace {
Tensor<float, 3> iota3(int64_t a, int64_t b, int64_t c) {
  Tensor<float, 3> t({a, b, c});
  for (int64_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<float>(i);
  return t;
}
}  // namespace

TEST_CASE("Tensor: aligned, zeroed, row-major", "[tensor]") {
  Tensor<float, 2> t({3, 5});
  REQUIRE(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
  for (float v : t.span()) REQUIRE(v == 0.f);
  t(2, 4) = 7.f;
  REQUIRE(t.data()[2 * 5 + 4] == 7.f);
  REQUIRE(t.view().strides() == Shape<2>{5, 1});
  REQUIRE(t.view().is_contiguous());
  REQUIRE_THROWS_AS((Tensor<float, 2>({-1, 3})), Error);
}

TEST_CASE("TensorView: narrow, transpose, permute, rows", "[tensor]") {
  auto t = iota3(2, 3, 4);
  TensorView<float, 3> v = t.view();
  auto n = v.narrow(2, 1, 3);  // [2, 3, 2]
  REQUIRE(n.shape() == Shape<3>{2, 3, 2});
  REQUIRE(n(1, 2, 1) == t(1, 2, 2));
  REQUIRE_FALSE(n.is_contiguous());
  auto tr = v.transpose(0, 2);  // [4, 3, 2]
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      for (int64_t k = 0; k < 4; ++k) REQUIRE(tr(k, j, i) == t(i, j, k));
  auto p = v.permute({1, 2, 0});  // [3, 4, 2]
  REQUIRE(p.shape() == Shape<3>{3, 4, 2});
  REQUIRE(p(2, 3, 1) == t(1, 2, 3));
  auto row = v[1];  // [3, 4]
  REQUIRE(row(2, 3) == t(1, 2, 3));
  REQUIRE_THROWS_AS(v.narrow(1, 2, 5), Error);
  REQUIRE_THROWS_AS(v.permute({0, 0, 1}), Error);
}

TEST_CASE("TensorView: reshape needs contiguity, contiguous() packs", "[tensor]") {
  auto t = iota3(2, 3, 4);
  auto r = t.view().reshape<2>({6, 4});
  REQUIRE(r(5, 3) == 23.f);
  REQUIRE_THROWS_AS(t.view().reshape<2>({5, 4}), Error);
  auto tr = t.view().transpose(1, 2);  // [2, 4, 3], strided
  REQUIRE_THROWS_AS(tr.reshape<1>({24}), Error);
  auto c = tr.contiguous();
  REQUIRE(c.view().is_contiguous());
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t k = 0; k < 3; ++k) REQUIRE(c(i, j, k) == t(i, k, j));
  TensorView<const float, 3> cv = t.view();  // mutable -> const view
  REQUIRE(cv(1, 1, 1) == t(1, 1, 1));
}

#ifndef NDEBUG
TEST_CASE("TensorView: out-of-range access throws in debug builds", "[tensor]") {
  auto t = iota3(2, 3, 4);
  REQUIRE_THROWS_AS(t.view()(2, 0, 0), Error);
  REQUIRE_THROWS_AS(t.view()(0, 0, -1), Error);
}
#endif

TEST_CASE("MappedFile: maps bytes, names missing files, checks regions", "[storage]") {
  const std::string path = "tessera_test_mapped.bin";
  {
    std::ofstream f(path, std::ios::binary);
    for (int i = 0; i < 1000; ++i) f.put(static_cast<char>(i & 0xff));
  }
  MappedFile m(path);
  REQUIRE(m.size() == 1000);
  REQUIRE(static_cast<unsigned char>(m.data()[999]) == (999 & 0xff));
  REQUIRE(m.region(990, 10) == m.data() + 990);
  REQUIRE_THROWS_WITH(m.region(995, 10), Catch::Contains("past the end"));
  REQUIRE_THROWS_WITH(m.region(SIZE_MAX, 2), Catch::Contains("past the end"));
  MappedFile moved = std::move(m);
  REQUIRE(moved.size() == 1000);
  std::remove(path.c_str());
  REQUIRE_THROWS_WITH(MappedFile("/nonexistent/model.gguf"), Catch::Contains("/nonexistent/model.gguf"));
  REQUIRE_THROWS_WITH(MappedFile("/tmp"), Catch::Contains("not a regular file"));
}

// Offsets past 2^32 catch any 32-bit size or offset arithmetic between open()
// and the view. The file is sparse (ftruncate, then a few pwrite()s), so it
// takes a few pages of disk, not 5 GiB; a filesystem that cannot hold a file
// this large (or refuses to) skips the case rather than failing it.
TEST_CASE("MappedFile: views at offsets past 4 GiB of a sparse 5 GiB file", "[storage]") {
  const std::string path = "tessera_test_mapped_5gib.bin";
  struct Remove {
    const std::string& p;
    ~Remove() { std::remove(p.c_str()); }
  } remove_at_end{path};

  constexpr size_t kSize = size_t{5} << 30;
  constexpr size_t kFloatsAt = (size_t{4} << 30) + 4096 * 3;  // past 4 GiB, 4-byte aligned
  constexpr size_t kLastByte = kSize - 1;
  const float floats[5] = {1.5f, -2.25f, 3.0e-5f, 65504.f, -0.f};
  const unsigned char tail = 0xa5;

  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool made = fd >= 0 && ::ftruncate(fd, static_cast<off_t>(kSize)) == 0 &&
              ::pwrite(fd, floats, sizeof floats, static_cast<off_t>(kFloatsAt)) == static_cast<ssize_t>(sizeof floats) &&
              ::pwrite(fd, &tail, 1, static_cast<off_t>(kLastByte)) == 1;
  const int err = errno;
  if (fd >= 0) made = ::close(fd) == 0 && made;
  if (!made) {
    WARN("skipped: cannot create a sparse 5 GiB file here (" << std::strerror(err) << ")");
    return;
  }

  MappedFile m(path);
  REQUIRE(m.size() == kSize);
  TensorView<const float, 1> v(reinterpret_cast<const float*>(m.region(kFloatsAt, sizeof floats)), {5});
  for (int64_t i = 0; i < 5; ++i) REQUIRE(std::memcmp(&v(i), &floats[i], sizeof(float)) == 0);
  REQUIRE(static_cast<unsigned char>(*m.region(kLastByte, 1)) == tail);
  REQUIRE(*m.region(kFloatsAt - 1, 1) == std::byte{0});  // a hole of the sparse file reads as zeros
  REQUIRE(m.region(kSize, 0) == m.data() + kSize);
  REQUIRE_THROWS_WITH(m.region(kLastByte, 2), Catch::Contains(std::to_string(kLastByte)) && Catch::Contains("past the end"));
}
