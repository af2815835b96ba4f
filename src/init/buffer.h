// A byte buffer for kindling-init's sockets and pipes: read(2) straight into its tail without
// zero-filling, consume from its head, compact lazily. Not thread-safe (init has one thread).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace kindling::init {

class Buffer {
 public:
  Buffer() = default;
  ~Buffer() { std::free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  char* data() { return data_ + begin_; }
  const char* data() const { return data_ + begin_; }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return end_ == begin_; }
  size_t capacity() const { return cap_; }
  std::string_view view() const { return {data_ + begin_, end_ - begin_}; }

  // Space for at least n more bytes after the content; valid until the next non-const call.
  char* Tail(size_t n) {
    if (cap_ - end_ < n) Grow(n);
    return data_ + end_;
  }
  size_t TailRoom() const { return cap_ - end_; }
  void Commit(size_t n) { end_ += n; }
  void Append(const void* p, size_t n) {
    if (n == 0) return;
    std::memcpy(Tail(n), p, n);
    end_ += n;
  }
  void Append(std::string_view s) { Append(s.data(), s.size()); }
  void Consume(size_t n) {
    begin_ += n;
    if (begin_ >= end_) begin_ = end_ = 0;
  }
  void Clear() { begin_ = end_ = 0; }
  // Returns memory to the allocator when empty and holding more than `keep` bytes.
  void ShrinkIfEmpty(size_t keep) {
    if (begin_ == end_ && cap_ > keep) {
      std::free(data_);
      data_ = nullptr;
      cap_ = begin_ = end_ = 0;
    }
  }

 private:
  void Grow(size_t n) {
    if (begin_ > 0) {
      std::memmove(data_, data_ + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
      if (cap_ - end_ >= n) return;
    }
    size_t cap = cap_ ? cap_ * 2 : 1024;
    while (cap < end_ + n) cap *= 2;
    char* p = static_cast<char*>(std::realloc(data_, cap));
    if (!p) throw std::bad_alloc();
    data_ = p;
    cap_ = cap;
  }

  char* data_ = nullptr;
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t cap_ = 0;
};

}  // namespace kindling::init
