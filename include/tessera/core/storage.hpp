/// \file
/// Where tensor bytes live: an owned, 64-byte aligned heap buffer, or a
/// read-only memory map of a file region (weights used in place, files > 4 GiB).
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "tessera/core/error.hpp"

namespace tessera {

inline constexpr size_t kAlignment = 64;  ///< Byte alignment of AlignedBuffer: a cache line; also the AVX-512 load width.

/// Owned, uninitialised, 64-byte aligned bytes. Move-only.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  /// Allocates n_bytes (rounded up to whole cache lines, so SIMD tails may read past
  /// the end), uninitialised; 0 allocates nothing. Throws std::bad_alloc.
  explicit AlignedBuffer(size_t n_bytes) : size_(n_bytes) {
    if (n_bytes) data_ = static_cast<std::byte*>(::operator new(round_up(n_bytes), std::align_val_t{kAlignment}));
  }
  /// Takes o's bytes; o is left empty.
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  /// Frees the current bytes and takes o's; o is left empty.
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) { release(); data_ = std::exchange(o.data_, nullptr); size_ = std::exchange(o.size_, 0); }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { release(); }

  std::byte* data() { return data_; }              ///< First byte, 64-byte aligned; nullptr when empty.
  const std::byte* data() const { return data_; }  ///< First byte, 64-byte aligned; nullptr when empty.
  size_t size() const { return size_; }            ///< Size in bytes as requested (without the padding).

 private:
  // Padding to whole cache lines lets SIMD tails read (never write) past the end safely.
  static size_t round_up(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }
  void release() {
    if (data_) ::operator delete(data_, std::align_val_t{kAlignment});
    data_ = nullptr;
    size_ = 0;
  }
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

/// A whole file mapped read-only. Move-only; unmaps on destruction.
class MappedFile {
 public:
  MappedFile() = default;
  /// Maps path. Throws Error naming the path for a missing, unreadable or non-regular file.
  explicit MappedFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open '", path, "': ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("'", path, "' is not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail("cannot map '", path, "' (", size_, " bytes): ", std::strerror(err));
      }
      data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);  // the mapping keeps the file alive
  }
  /// Takes o's mapping; o is left empty.
  MappedFile(MappedFile&& o) noexcept
      : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  /// Unmaps the current file and takes o's mapping; o is left empty.
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { unmap(); }

  const std::byte* data() const { return data_; }    ///< First byte of the file; nullptr for an empty file.
  size_t size() const { return size_; }              ///< File size in bytes.
  const std::string& path() const { return path_; }  ///< The path it was opened with (for messages).

  /// Bytes [offset, offset + n_bytes); throws if the region reaches past the end.
  const std::byte* region(size_t offset, size_t n_bytes) const {
    check(offset <= size_ && n_bytes <= size_ - offset, "'", path_, "': region [", offset, ", +", n_bytes,
          ") reaches past the end of the file (", size_, " bytes)");
    return data_ + offset;
  }

 private:
  void unmap() {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tessera
