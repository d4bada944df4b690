// File: engine/durable/internal/record_codec.h
// -----------------------------------------------------------------------------
// The journal record of a command: an op byte, the command's fields (walked by
// its one field list, commands.h), then a cheap fingerprint of its result (the
// status code; for TakeReady the lease count and a hash of the ids; for
// reports the decision action; for a drain the event count). Replay decodes
// the fields with the same list, re-executes the command, and compares the
// fingerprint, so a journal replayed onto the wrong snapshot, or a behaviour
// change between versions, is DataLoss rather than a silently different state.
//
// The byte layout is that of journal format 1, written by mailretry 0.1
// (tests/golden/durable-0.1 holds such a journal).
#ifndef MAILRETRY_ENGINE_DURABLE_INTERNAL_RECORD_CODEC_H_
#define MAILRETRY_ENGINE_DURABLE_INTERNAL_RECORD_CODEC_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mailretry/common/internal/binary_io.h"
#include "mailretry/engine/internal/commands.h"
#include "mailretry/reply/reply.h"

namespace mailretry::internal {

// Appends little-endian fields; a reply as transport, code, enhanced, text.
class RecordWriter : public BinaryWriter {
 public:
  using BinaryWriter::BinaryWriter;
  void Reply(const mailretry::Reply& r) {
    U8(static_cast<uint8_t>(r.transport));
    U32(static_cast<uint32_t>(r.code));
    U8(r.enhanced.has_value());
    if (r.enhanced) {
      U8(r.enhanced->klass);
      U32(r.enhanced->subject);
      U32(r.enhanced->detail);
    }
    Str(r.text);
  }

  // The field visitor of commands.h.
  void operator()(absl::Time t) { Time(t); }
  void operator()(uint64_t v) { U64(v); }
  void operator()(std::string_view s) { Str(s); }
  void operator()(const std::optional<absl::Time>& t) {
    U8(t.has_value());
    I64(t ? absl::ToUnixMillis(*t) : 0);
  }
  void operator()(const mailretry::Reply* r) { Reply(*r); }
  void operator()(absl::Span<const uint64_t> v) {
    U64(v.size());
    for (uint64_t x : v) U64(x);
  }
  void operator()(absl::Span<const uint32_t> v) {
    U64(v.size());
    for (uint32_t x : v) U32(x);
  }
  void operator()(absl::Span<const std::string> v) {
    U64(v.size());
    for (const std::string& x : v) Str(x);
  }
  void operator()(absl::Span<const mailretry::Reply> v) {
    U64(v.size());
    for (const mailretry::Reply& x : v) Reply(x);
  }
};

// Reads what RecordWriter wrote; any overrun turns ok() false. Decoded
// strings, arrays and replies live in the reader, so the views of a decoded
// command stay valid as long as the reader does.
class RecordReader : public BinaryReader {
 public:
  using BinaryReader::BinaryReader;
  mailretry::Reply Reply() {
    mailretry::Reply r;
    const uint8_t t = U8();
    if (t >= kNumTransports) Fail();
    r.transport = static_cast<Transport>(t);
    r.code = static_cast<int>(U32());
    if (U8() != 0) {
      EnhancedCode e;
      e.klass = U8();
      e.subject = static_cast<uint16_t>(U32());
      e.detail = static_cast<uint16_t>(U32());
      r.enhanced = e;
    }
    r.text = Str();
    return r;
  }

  // The field visitor of commands.h.
  void operator()(absl::Time& t) { t = Time(); }
  void operator()(uint64_t& v) { v = U64(); }
  void operator()(std::string_view& s) { s = strings_.emplace_back(Str()); }
  void operator()(std::optional<absl::Time>& t) {
    const bool has = U8() != 0;
    const absl::Time v = Time();
    t = has ? std::optional<absl::Time>(v) : std::nullopt;
  }
  void operator()(const mailretry::Reply*& r) { r = &replies_.emplace_back(Reply()); }
  void operator()(absl::Span<const uint64_t>& v) {
    std::vector<uint64_t>& a = u64s_.emplace_back(Count(8));
    for (uint64_t& x : a) x = U64();
    v = a;
  }
  void operator()(absl::Span<const uint32_t>& v) {
    std::vector<uint32_t>& a = u32s_.emplace_back(Count(4));
    for (uint32_t& x : a) x = U32();
    v = a;
  }
  void operator()(absl::Span<const std::string>& v) {
    std::vector<std::string>& a = string_lists_.emplace_back(Count(4));
    for (std::string& x : a) x = Str();
    v = a;
  }
  void operator()(absl::Span<const mailretry::Reply>& v) {
    const uint64_t n = Count(4);
    std::vector<mailretry::Reply>& a = reply_lists_.emplace_back();
    for (uint64_t i = 0; i < n && ok(); ++i) a.push_back(Reply());
    v = a;
  }

 private:
  std::deque<std::string> strings_;
  std::deque<mailretry::Reply> replies_;
  std::deque<std::vector<uint64_t>> u64s_;
  std::deque<std::vector<uint32_t>> u32s_;
  std::deque<std::vector<std::string>> string_lists_;
  std::deque<std::vector<mailretry::Reply>> reply_lists_;
};

// --- result fingerprints -------------------------------------------------------

// A decision: its action, or 0x80 | status code.
inline uint8_t DecisionOutcome(const absl::StatusOr<Decision>& d) {
  return d.ok() ? static_cast<uint8_t>(d->action)
                : static_cast<uint8_t>(0x80 | static_cast<int>(d.status().code()));
}
inline uint8_t StatusOutcome(const absl::Status& s) { return static_cast<uint8_t>(s.code()); }

// FNV-1a over the leased ids, in order: catches a replay that leases other
// messages, for 8 bytes per record.
inline uint64_t LeaseHash(const std::vector<Lease>& leases) {
  uint64_t h = 1469598103934665603ull;
  for (const Lease& l : leases) {
    h ^= l.msg_id;
    h *= 1099511628211ull;
  }
  return h;
}

inline void WriteOutcome(RecordWriter& w, const absl::Status& s) { w.U8(StatusOutcome(s)); }
inline void WriteOutcome(RecordWriter& w, const absl::StatusOr<std::vector<Lease>>& r) {
  w.U8(StatusOutcome(r.status()));
  w.U64(r.ok() ? r->size() : 0);
  w.U64(r.ok() ? LeaseHash(*r) : 0);
}
inline void WriteOutcome(RecordWriter& w, const absl::StatusOr<Decision>& d) {
  w.U8(DecisionOutcome(d));
}
inline void WriteOutcome(RecordWriter& w, const Decisions& ds) {
  for (const auto& d : ds) w.U8(DecisionOutcome(d));
}
inline void WriteOutcome(RecordWriter& w, const std::vector<Event>& events) {
  w.U64(events.size());
}

// The record of `cmd` with result `result`, appended to `out`.
template <class Cmd>
void WriteRecord(std::string* out, const Cmd& cmd, const typename Cmd::Result& result) {
  RecordWriter w(out);
  w.U8(static_cast<uint8_t>(Cmd::kOp));
  Cmd::Fields(cmd, w);
  WriteOutcome(w, result);
}

// Compares a replayed result with the fingerprint that follows the fields.
// The error describes the mismatch; the caller adds where it is.
absl::Status CheckOutcome(RecordReader& r, std::string_view what, const absl::Status& got);
absl::Status CheckOutcome(RecordReader& r, std::string_view what,
                          const absl::StatusOr<std::vector<Lease>>& got);
absl::Status CheckOutcome(RecordReader& r, std::string_view what,
                          const absl::StatusOr<Decision>& got);
absl::Status CheckOutcome(RecordReader& r, std::string_view what, const Decisions& got);
absl::Status CheckOutcome(RecordReader& r, std::string_view what, const std::vector<Event>& got);

}  // namespace mailretry::internal

#endif  // MAILRETRY_ENGINE_DURABLE_INTERNAL_RECORD_CODEC_H_
