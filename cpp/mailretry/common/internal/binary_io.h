// File: common/internal/binary_io.h
// -----------------------------------------------------------------------------
// Little-endian field encoding shared by engine snapshots and the journal: a
// writer that appends to a caller's string, and a bounds-checked reader whose
// ok() turns false on any overrun (never reads past the input, never
// allocates from a corrupt length).
#ifndef MAILRETRY_COMMON_INTERNAL_BINARY_IO_H_
#define MAILRETRY_COMMON_INTERNAL_BINARY_IO_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace mailretry::internal {

class BinaryWriter {
 public:
  explicit BinaryWriter(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    char b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
    out_->append(b, 4);
  }
  void U64(uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
    out_->append(b, 8);
  }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void Bool(bool b) { U8(b ? 1 : 0); }
  void F64(double d) {
    uint64_t v;
    std::memcpy(&v, &d, sizeof v);
    U64(v);
  }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_->append(s.data(), s.size());
  }
  // Nanoseconds; InfiniteDuration as INT64_MAX.
  void Dur(absl::Duration d) {
    I64(d == absl::InfiniteDuration() ? std::numeric_limits<int64_t>::max()
                                      : absl::ToInt64Nanoseconds(d));
  }
  // Milliseconds since the epoch: the engine's time granularity.
  void Time(absl::Time t) { I64(absl::ToUnixMillis(t)); }

 private:
  std::string* out_;
};

class BinaryReader {
 public:
  explicit BinaryReader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }
  // Marks the input as malformed (for checks made by the caller).
  void Fail() { ok_ = false; }

  uint8_t U8() {
    if (pos_ >= in_.size()) {
      ok_ = false;
      return 0;
    }
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint32_t U32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{U8()} << (8 * i);
    return v;
  }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{U8()} << (8 * i);
    return v;
  }
  int64_t I64() { return static_cast<int64_t>(U64()); }
  bool Bool() { return U8() != 0; }
  double F64() {
    const uint64_t v = U64();
    double d;
    std::memcpy(&d, &v, sizeof d);
    return d;
  }
  std::string Str() {
    const uint32_t n = U32();
    if (!ok_ || n > in_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  absl::Duration Dur() {
    const int64_t v = I64();
    return v == std::numeric_limits<int64_t>::max() ? absl::InfiniteDuration()
                                                    : absl::Nanoseconds(v);
  }
  absl::Time Time() { return absl::FromUnixMillis(I64()); }
  // A count of items that each take at least `min_bytes`: rejects counts the
  // remaining input cannot hold, so a corrupt count cannot allocate wildly.
  uint64_t Count(size_t min_bytes) {
    const uint64_t n = U64();
    if (!ok_ || n > remaining() / (min_bytes > 0 ? min_bytes : 1)) {
      ok_ = false;
      return 0;
    }
    return n;
  }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace mailretry::internal

#endif  // MAILRETRY_COMMON_INTERNAL_BINARY_IO_H_
