// The engine's durable mode: Engine::OpenDurable / Compact / Sync and the
// journal file (format and guarantees in engine_journal.h).
//
// Records hold the call's arguments and a cheap fingerprint of its outcome
// (status code; for TakeReady the lease count and a hash of the ids; for
// reports the decision action). Replay re-executes the calls through the
// public API and compares fingerprints, so a journal replayed onto the wrong
// snapshot, or a behaviour change between versions, is DataLoss rather than a
// silently different state.

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/durable/journal.h"
#include "mailretry/common/internal/binary_io.h"
#include "mailretry/engine/internal/state.h"
#include "mailretry/reply/reply.h"
#include "re2/re2.h"  // Impl owns compiled RE2s; destroying one here needs the type

namespace mailretry {
namespace internal {
namespace {

constexpr char kJournalMagic[8] = {'M', 'R', 'J', 'R', 'N', 'L', '\r', '\n'};
constexpr uint32_t kJournalVersion = 1;
constexpr size_t kHeaderSize = 8 + 4 + 8 + 4;
constexpr size_t kFrameSize = 8;  // u32 crc + u32 length
constexpr uint32_t kMaxRecord = uint32_t{1} << 30;

enum class Op : uint8_t {
  kSubmit = 1,
  kSubmitMany = 2,
  kAdvance = 3,
  kTakeReady = 4,
  kReport = 5,
  kReportMany = 6,
  kReportManyText = 7,
  kDrainEvents = 8,
};

// Outcome byte for a decision: the action, or 0x80 | status code.
uint8_t DecisionOutcome(const absl::StatusOr<Decision>& d) {
  return d.ok() ? static_cast<uint8_t>(d->action) : static_cast<uint8_t>(0x80 | static_cast<int>(d.status().code()));
}
uint8_t StatusOutcome(const absl::Status& s) { return static_cast<uint8_t>(s.code()); }

// FNV-1a over the leased ids, in order: catches a replay that leases other
// messages, for 8 bytes per record.
uint64_t LeaseHash(const std::vector<Lease>& leases) {
  uint64_t h = 1469598103934665603ull;
  for (const Lease& l : leases) {
    h ^= l.msg_id;
    h *= 1099511628211ull;
  }
  return h;
}

int64_t TimeMs(absl::Time t) { return absl::ToUnixMillis(t); }

// Appends little-endian fields to a string the journal reuses between records.
class Encoder : public internal::BinaryWriter {
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
};

// Reads what Encoder wrote; any overrun turns ok() false.
class Decoder : public internal::BinaryReader {
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
};

std::string JoinPath(const std::string& dir, std::string_view name) {
  return absl::StrCat(dir, "/", std::string(name));
}
std::string SnapshotName(uint64_t g) { return absl::StrCat("snapshot-", g, ".mrs"); }
std::string JournalName(uint64_t g) { return absl::StrCat("journal-", g, ".mrj"); }

absl::Status Errno(absl::string_view what, const std::string& path, int err) {
  return absl::UnavailableError(absl::StrCat(what, " '", path, "': ", std::strerror(err)));
}

absl::Status WriteFully(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

int DataSync(int fd) {
#if defined(__linux__)
  // Appends change the size, which fdatasync flushes too; the timestamps it
  // skips are not needed to read the journal back.
  return ::fdatasync(fd);
#else
  return ::fsync(fd);
#endif
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open directory", dir, errno);
  absl::Status s;
  if (::fsync(fd) != 0) s = Errno("cannot fsync directory", dir, errno);
  ::close(fd);
  return s;
}

// "<prefix><digits><suffix>" -> digits; nullopt otherwise.
std::optional<uint64_t> ParseGeneration(std::string_view name, std::string_view prefix, std::string_view suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.substr(0, prefix.size()) != prefix ||
      name.substr(name.size() - suffix.size()) != suffix) {
    return std::nullopt;
  }
  const std::string_view digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18) return std::nullopt;
  uint64_t g = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    g = g * 10 + static_cast<uint64_t>(c - '0');
  }
  return g;
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Errno("cannot list directory", dir, errno);
  while (const dirent* e = ::readdir(d)) out.emplace_back(e->d_name);
  ::closedir(d);
  return out;
}

std::string JournalHeader(uint64_t generation) {
  std::string h(kJournalMagic, sizeof kJournalMagic);
  Encoder e(&h);
  e.U32(kJournalVersion);
  e.U64(generation);
  e.U32(Crc32c(h));
  return h;
}

// Creates journal-<g>.mrj holding only its header, atomically (temporary
// file, fsync, rename, directory fsync), and opens it for appending.
absl::StatusOr<int> CreateJournal(const std::string& dir, uint64_t generation) {
  const std::string path = JoinPath(dir, JournalName(generation));
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create journal", tmp, errno);
  absl::Status s = WriteFully(fd, JournalHeader(generation));
  if (s.ok() && ::fsync(fd) != 0) s = absl::UnavailableError(std::strerror(errno));
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = absl::UnavailableError(std::strerror(errno));
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot create journal '", path, "': ", s.message()));
  }
  if (absl::Status ds = SyncDir(dir); !ds.ok()) return ds;
  const int afd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (afd < 0) return Errno("cannot open journal", path, errno);
  return afd;
}

// kGrouped: fsyncs the journal from its own thread, at most once per interval
// of wall time and only when something was written, so the caller never
// waits for the disk and an idle engine's last calls still reach it within
// one interval. Holds its own dup() of the journal descriptor, under its own
// mutex, so the fsync runs outside the engine's lock.
class BackgroundSyncer {
 public:
  BackgroundSyncer(int fd, absl::Duration interval, std::string path)
      : interval_(std::max(interval, absl::Milliseconds(1))), path_(std::move(path)), fd_(::dup(fd)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~BackgroundSyncer() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      cv_.Signal();
    }
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  BackgroundSyncer(const BackgroundSyncer&) = delete;
  BackgroundSyncer& operator=(const BackgroundSyncer&) = delete;

  // Called for every record, under the engine's lock: one relaxed store.
  void MarkDirty() { dirty_.store(true, std::memory_order_relaxed); }
  // The journal file changed (compaction).
  void SetFile(int fd, std::string path) {
    absl::MutexLock lock(&mu_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::dup(fd);
    path_ = std::move(path);
    dirty_.store(false, std::memory_order_relaxed);
  }
  uint64_t fsyncs() const { return fsyncs_.load(std::memory_order_relaxed); }
  absl::Status error() const {
    if (!failed_.load(std::memory_order_acquire)) return absl::OkStatus();
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  void Loop() {
    absl::MutexLock lock(&mu_);
    while (!stop_) {
      cv_.WaitWithTimeout(&mu_, interval_);
      if (stop_) break;
      if (!dirty_.exchange(false, std::memory_order_relaxed)) continue;
      if (fd_ < 0 || DataSync(fd_) != 0) {
        error_ = Errno("cannot fsync journal", path_, fd_ < 0 ? EBADF : errno);
        failed_.store(true, std::memory_order_release);
        return;
      }
      fsyncs_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  const absl::Duration interval_;
  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  bool stop_ = false;
  std::string path_;
  int fd_ = -1;
  absl::Status error_;
  std::atomic<bool> dirty_{false};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> fsyncs_{0};
  std::thread thread_;
};

// The journal file of a durable engine. Every method runs under Impl::mu.
class FileJournal final : public JournalSink {
 public:
  FileJournal(std::string dir, int lock_fd, JournalOptions options)
      : dir_(std::move(dir)), lock_fd_(lock_fd), options_(options) {
    info_.directory = dir_;
  }
  ~FileJournal() override {
    syncer_.reset();  // joins its thread before the descriptor goes
    if (fd_ >= 0) {
      if (dirty_ && options_.fsync != JournalOptions::Fsync::kNever) DataSync(fd_);
      ::close(fd_);
    }
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
  }
  FileJournal(const FileJournal&) = delete;
  FileJournal& operator=(const FileJournal&) = delete;

  void Attach(const Engine::Impl* impl, int fd, uint64_t generation, uint64_t records, uint64_t bytes) {
    impl_ = impl;
    fd_ = fd;
    next_compact_at_ = options_.compact_after_records;
    info_.generation = generation;
    info_.records = records;
    info_.bytes = bytes;
    if (options_.fsync == JournalOptions::Fsync::kGrouped) {
      syncer_ = std::make_unique<BackgroundSyncer>(fd_, options_.group_interval, Path());
    }
  }
  JournalInfo& info() { return info_; }
  JournalInfo Snapshot() const {
    JournalInfo i = info_;
    if (syncer_ != nullptr) i.fsyncs += syncer_->fsyncs();
    return i;
  }
  const std::string& dir() const { return dir_; }

  absl::Status health() const override {
    if (!health_.ok() || syncer_ == nullptr) return health_;
    return syncer_->error();
  }

  absl::Status Submit(uint64_t msg_id, std::string_view destination, absl::Time now, std::string_view source,
                      std::optional<absl::Time> not_before, const absl::Status& result) override {
    Encoder e = Begin(Op::kSubmit);
    e.I64(TimeMs(now));
    e.U64(msg_id);
    e.Str(destination);
    e.Str(source);
    e.U8(not_before.has_value());
    e.I64(not_before ? TimeMs(*not_before) : 0);
    e.U8(StatusOutcome(result));
    return Commit();
  }

  absl::Status SubmitMany(absl::Span<const uint64_t> msg_ids, absl::Span<const uint32_t> destination_indices,
                          absl::Span<const std::string> destination_names, absl::Time now,
                          absl::Span<const uint32_t> source_indices, absl::Span<const std::string> source_names,
                          const absl::Status& result) override {
    Encoder e = Begin(Op::kSubmitMany);
    e.I64(TimeMs(now));
    e.U64(msg_ids.size());
    for (uint64_t id : msg_ids) e.U64(id);
    e.U64(destination_indices.size());
    for (uint32_t i : destination_indices) e.U32(i);
    e.U64(destination_names.size());
    for (const std::string& n : destination_names) e.Str(n);
    e.U64(source_indices.size());
    for (uint32_t i : source_indices) e.U32(i);
    e.U64(source_names.size());
    for (const std::string& n : source_names) e.Str(n);
    e.U8(StatusOutcome(result));
    return Commit();
  }

  absl::Status Advance(absl::Time now, const absl::Status& result) override {
    Encoder e = Begin(Op::kAdvance);
    e.I64(TimeMs(now));
    e.U8(StatusOutcome(result));
    return Commit();
  }

  absl::Status TakeReady(absl::Time now, size_t limit, const absl::StatusOr<std::vector<Lease>>& result) override {
    Encoder e = Begin(Op::kTakeReady);
    e.I64(TimeMs(now));
    e.U64(limit);
    e.U8(StatusOutcome(result.status()));
    e.U64(result.ok() ? result->size() : 0);
    e.U64(result.ok() ? LeaseHash(*result) : 0);
    return Commit();
  }

  absl::Status Report(uint64_t msg_id, absl::Time now, const mailretry::Reply& reply,
                      const absl::StatusOr<Decision>& result) override {
    Encoder e = Begin(Op::kReport);
    e.I64(TimeMs(now));
    e.U64(msg_id);
    e.Reply(reply);
    e.U8(DecisionOutcome(result));
    return Commit();
  }

  absl::Status ReportMany(absl::Span<const uint64_t> msg_ids, absl::Span<const mailretry::Reply> replies,
                          absl::Time now, const std::vector<absl::StatusOr<Decision>>& results) override {
    Encoder e = Begin(Op::kReportMany);
    e.I64(TimeMs(now));
    e.U64(msg_ids.size());
    for (uint64_t id : msg_ids) e.U64(id);
    // Only the replies paired with an id are ever read.
    const size_t n = std::min(msg_ids.size(), replies.size());
    e.U64(n);
    for (size_t i = 0; i < n; ++i) e.Reply(replies[i]);
    for (const auto& r : results) e.U8(DecisionOutcome(r));
    return Commit();
  }

  absl::Status ReportManyText(absl::Span<const uint64_t> msg_ids, absl::Span<const std::string> raw_replies,
                              absl::Time now, const std::vector<absl::StatusOr<Decision>>& results) override {
    Encoder e = Begin(Op::kReportManyText);
    e.I64(TimeMs(now));
    e.U64(msg_ids.size());
    for (uint64_t id : msg_ids) e.U64(id);
    const size_t n = std::min(msg_ids.size(), raw_replies.size());
    e.U64(n);
    for (size_t i = 0; i < n; ++i) e.Str(raw_replies[i]);
    for (const auto& r : results) e.U8(DecisionOutcome(r));
    return Commit();
  }

  absl::Status DrainEvents(size_t count) override {
    Encoder e = Begin(Op::kDrainEvents);
    e.U64(count);
    return Commit();
  }

  absl::Status Sync() {
    if (absl::Status h = health(); !h.ok()) return h;
    // dirty_ counts from the last synchronous fsync: a background one may
    // not have covered the latest records yet.
    return dirty_ ? SyncNow() : absl::OkStatus();
  }

  // Compaction: a new snapshot generation, then a new journal, then the old
  // generation's files go. A crash at any point leaves a generation whose
  // snapshot and journal together hold every journaled call.
  absl::Status Compact(const Engine::Impl& impl) {
    if (absl::Status h = health(); !h.ok()) return h;
    const uint64_t next = info_.generation + 1;
    const std::string snap = JoinPath(dir_, SnapshotName(next));
    if (absl::Status s = SaveLocked(impl, snap); !s.ok()) return s;  // old generation still complete
    absl::StatusOr<int> fd = CreateJournal(dir_, next);
    if (!fd.ok()) {
      // Without journal next, recovery would pick snapshot next and create an
      // empty journal, losing what is appended to the current one from now on.
      if (::unlink(snap.c_str()) != 0 || !SyncDir(dir_).ok()) {
        return Fail(absl::UnavailableError(absl::StrCat(
            fd.status().message(), "; and cannot remove '", snap, "', so the journal stops accepting calls")));
      }
      return fd.status();
    }
    ::close(fd_);
    fd_ = *fd;
    info_.generation = next;
    info_.records = 0;
    info_.bytes = kHeaderSize;
    ++info_.compactions;
    next_compact_at_ = options_.compact_after_records;
    dirty_ = false;
    if (syncer_ != nullptr) syncer_->SetFile(fd_, Path());
    RemoveStale(dir_, next);
    return absl::OkStatus();
  }

  // Removes generations older than `keep` and temporary files left by an
  // interrupted save or journal creation. Best effort: what stays is removed
  // at the next open or compaction.
  static void RemoveStale(const std::string& dir, uint64_t keep) {
    absl::StatusOr<std::vector<std::string>> names = ListDir(dir);
    if (!names.ok()) return;
    bool removed = false;
    for (const std::string& n : *names) {
      std::optional<uint64_t> g = ParseGeneration(n, "snapshot-", ".mrs");
      if (!g) g = ParseGeneration(n, "journal-", ".mrj");
      const bool stale_gen = g && *g < keep;
      const bool temp = (n.rfind("snapshot-", 0) == 0 && n.find(".mrs.tmp.") != std::string::npos) ||
                        (n.rfind("journal-", 0) == 0 && n.size() > 8 && n.substr(n.size() - 8) == ".mrj.tmp");
      if (stale_gen || temp) removed |= ::unlink(JoinPath(dir, n).c_str()) == 0;
    }
    if (removed) SyncDir(dir).IgnoreError();
  }

  std::string Path() const { return JoinPath(dir_, JournalName(info_.generation)); }

 private:
  Encoder Begin(Op op) {
    buf_.assign(kFrameSize, '\0');  // length and crc, filled in by Commit
    Encoder e(&buf_);
    e.U8(static_cast<uint8_t>(op));
    return e;
  }

  absl::Status Commit() {
    // Frame: crc, then length, so that the checksummed bytes (length and
    // payload) are contiguous.
    const uint32_t len = static_cast<uint32_t>(buf_.size() - kFrameSize);
    for (int i = 0; i < 4; ++i) buf_[4 + i] = static_cast<char>(len >> (8 * i));
    const uint32_t crc = Crc32c(std::string_view(buf_).substr(4));
    for (int i = 0; i < 4; ++i) buf_[i] = static_cast<char>(crc >> (8 * i));
    if (absl::Status s = WriteFully(fd_, buf_); !s.ok()) {
      // A partial write would be a torn record in the middle once more
      // records follow: cut it off, then refuse further calls.
      [[maybe_unused]] const int rc = ::ftruncate(fd_, static_cast<off_t>(info_.bytes));
      return Fail(absl::UnavailableError(absl::StrCat("cannot append to journal '", Path(), "': ", s.message())));
    }
    ++info_.records;
    info_.bytes += buf_.size();
    dirty_ = true;
    switch (options_.fsync) {
      case JournalOptions::Fsync::kNever:
        break;
      case JournalOptions::Fsync::kEveryOp:
        if (absl::Status s = SyncNow(); !s.ok()) return s;
        break;
      case JournalOptions::Fsync::kGrouped:
        syncer_->MarkDirty();
        break;
    }
    if (next_compact_at_ != 0 && info_.records >= next_compact_at_) {
      if (absl::Status s = Compact(*impl_); !s.ok()) {
        // This call's record is in the journal: the call succeeded. Try again
        // later rather than on every call while, say, the disk is full. (A
        // compaction that cannot undo itself already set health_.)
        next_compact_at_ = info_.records + options_.compact_after_records;
        ++info_.failed_compactions;
      }
    }
    return absl::OkStatus();
  }

  absl::Status SyncNow() {
    if (DataSync(fd_) != 0) return Fail(Errno("cannot fsync journal", Path(), errno));
    ++info_.fsyncs;
    dirty_ = false;
    return absl::OkStatus();
  }

  absl::Status Fail(absl::Status s) {
    health_ = s;
    return s;
  }

 private:
  std::string dir_;
  int lock_fd_ = -1;
  int fd_ = -1;
  JournalOptions options_;
  const Engine::Impl* impl_ = nullptr;  // for automatic compaction
  uint64_t next_compact_at_ = 0;        // records; 0 = never
  JournalInfo info_;
  absl::Status health_;
  bool dirty_ = false;  // written since the last synchronous fsync
  std::string buf_;
  std::unique_ptr<BackgroundSyncer> syncer_;  // kGrouped only
};


absl::StatusOr<std::string> ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat("'", path, "' does not exist"));
    return Errno("cannot open", path, err);
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return Errno("cannot read", path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// The payload of the record at `off`, or nullopt if it is cut short or fails
// its checksum; `end` is set to the offset after it when valid.
std::optional<std::string_view> RecordAt(std::string_view data, size_t off, size_t* end) {
  if (data.size() - off < kFrameSize) return std::nullopt;
  Decoder frame(data.substr(off, kFrameSize));
  const uint32_t crc = frame.U32();
  const uint32_t len = frame.U32();
  if (len == 0 || len > kMaxRecord || len > data.size() - off - kFrameSize) return std::nullopt;
  if (Crc32c(data.substr(off + 4, 4 + size_t{len})) != crc) return std::nullopt;
  *end = off + kFrameSize + len;
  return data.substr(off + kFrameSize, len);
}

// Whether a valid record starts anywhere after `from`. A crash can only
// damage the end of the journal (records are appended with one write()), so
// a bad record with valid records after it is corruption, not a torn write.
bool ValidRecordAfter(std::string_view data, size_t from) {
  size_t end = 0;
  for (size_t p = from; p + kFrameSize < data.size(); ++p) {
    if (RecordAt(data, p, &end)) return true;
  }
  return false;
}

std::string DescribeOutcome(uint8_t o, bool decision) {
  if (decision && o < 0x80) return std::string(DecisionActionName(static_cast<DecisionAction>(o)));
  const int code = decision ? (o & 0x7f) : o;
  return code == 0 ? "OK" : absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Re-executes one journaled call. An error describes the mismatch or the
// undecodable payload; the caller adds the file, record number and offset.
absl::Status ApplyRecord(Engine& e, std::string_view payload) {
  Decoder d(payload);
  const Op op = static_cast<Op>(d.U8());
  auto undecodable = [] { return absl::DataLossError("undecodable payload"); };
  auto mismatch = [](std::string_view what, const std::string& got, const std::string& want) {
    return absl::DataLossError(absl::StrCat(std::string(what), " replayed as ", got, ", journal says ", want,
                                            ": the journal does not belong to this snapshot"));
  };
  auto check_status = [&](std::string_view what, const absl::Status& s, uint8_t want) -> absl::Status {
    if (StatusOutcome(s) == want) return absl::OkStatus();
    return mismatch(what, DescribeOutcome(StatusOutcome(s), false), DescribeOutcome(want, false));
  };
  auto check_decisions = [&](std::string_view what, const std::vector<absl::StatusOr<Decision>>& got,
                             const std::vector<uint8_t>& want) -> absl::Status {
    for (size_t i = 0; i < got.size(); ++i) {
      if (DecisionOutcome(got[i]) != want[i]) {
        return mismatch(absl::StrCat(std::string(what), " entry ", i), DescribeOutcome(DecisionOutcome(got[i]), true),
                        DescribeOutcome(want[i], true));
      }
    }
    return absl::OkStatus();
  };
  switch (op) {
    case Op::kSubmit: {
      const absl::Time now = d.Time();
      const uint64_t id = d.U64();
      const std::string dest = d.Str();
      const std::string source = d.Str();
      const bool has_nb = d.U8() != 0;
      const absl::Time nb = d.Time();
      const uint8_t want = d.U8();
      if (!d.ok() || !d.done()) return undecodable();
      return check_status("submit", e.Submit(id, dest, now, source, has_nb ? std::optional<absl::Time>(nb) : std::nullopt),
                          want);
    }
    case Op::kSubmitMany: {
      const absl::Time now = d.Time();
      std::vector<uint64_t> ids(d.Count(8));
      for (uint64_t& id : ids) id = d.U64();
      std::vector<uint32_t> di(d.Count(4));
      for (uint32_t& i : di) i = d.U32();
      std::vector<std::string> dn(d.Count(4));
      for (std::string& n : dn) n = d.Str();
      std::vector<uint32_t> si(d.Count(4));
      for (uint32_t& i : si) i = d.U32();
      std::vector<std::string> sn(d.Count(4));
      for (std::string& n : sn) n = d.Str();
      const uint8_t want = d.U8();
      if (!d.ok() || !d.done()) return undecodable();
      return check_status("submit_many", e.SubmitMany(ids, di, dn, now, si, sn), want);
    }
    case Op::kAdvance: {
      const absl::Time now = d.Time();
      const uint8_t want = d.U8();
      if (!d.ok() || !d.done()) return undecodable();
      return check_status("advance", e.Advance(now), want);
    }
    case Op::kTakeReady: {
      const absl::Time now = d.Time();
      const uint64_t limit = d.U64();
      const uint8_t want = d.U8();
      const uint64_t count = d.U64();
      const uint64_t hash = d.U64();
      if (!d.ok() || !d.done()) return undecodable();
      absl::StatusOr<std::vector<Lease>> got = e.TakeReady(now, static_cast<size_t>(limit));
      if (absl::Status s = check_status("take_ready", got.status(), want); !s.ok()) return s;
      if (got.ok() && (got->size() != count || LeaseHash(*got) != hash)) {
        return mismatch("take_ready", absl::StrCat(got->size(), " leases"),
                        absl::StrCat(count, " leases", got->size() == count ? " of other messages" : ""));
      }
      return absl::OkStatus();
    }
    case Op::kReport: {
      const absl::Time now = d.Time();
      const uint64_t id = d.U64();
      const mailretry::Reply reply = d.Reply();
      const uint8_t want = d.U8();
      if (!d.ok() || !d.done()) return undecodable();
      return check_decisions("report", {e.Report(id, now, reply)}, {want});
    }
    case Op::kReportMany:
    case Op::kReportManyText: {
      const absl::Time now = d.Time();
      std::vector<uint64_t> ids(d.Count(8));
      for (uint64_t& id : ids) id = d.U64();
      const uint64_t n = d.Count(4);
      std::vector<mailretry::Reply> replies;
      std::vector<std::string> texts;
      for (uint64_t i = 0; i < n && d.ok(); ++i) {
        if (op == Op::kReportMany) {
          replies.push_back(d.Reply());
        } else {
          texts.push_back(d.Str());
        }
      }
      std::vector<uint8_t> want(ids.size());
      for (uint8_t& w : want) w = d.U8();
      if (!d.ok() || !d.done()) return undecodable();
      if (op == Op::kReportMany) return check_decisions("report_many", e.ReportMany(ids, replies, now), want);
      return check_decisions("report_many", e.ReportManyText(ids, texts, now), want);
    }
    case Op::kDrainEvents: {
      const uint64_t want = d.U64();
      if (!d.ok() || !d.done()) return undecodable();
      const size_t got = e.DrainEvents().size();
      if (got != want) return mismatch("drain_events", absl::StrCat(got, " events"), absl::StrCat(want, " events"));
      return absl::OkStatus();
    }
  }
  return absl::DataLossError(absl::StrCat("unknown operation ", static_cast<int>(op)));
}

struct ReplayResult {
  uint64_t records = 0;
  size_t valid_end = 0;
  bool torn = false;
};

absl::StatusOr<ReplayResult> Replay(Engine& e, const std::string& path, std::string_view data, uint64_t generation) {
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("journal '", path, "' is corrupt: ", why));
  };
  if (data.size() < kHeaderSize) return corrupt("truncated header");
  if (std::memcmp(data.data(), kJournalMagic, sizeof kJournalMagic) != 0) {
    return corrupt("not a mailretry journal (bad magic)");
  }
  Decoder head(data.substr(sizeof kJournalMagic, kHeaderSize - sizeof kJournalMagic));
  const uint32_t version = head.U32();
  const uint64_t gen = head.U64();
  const uint32_t crc = head.U32();
  if (Crc32c(data.substr(0, kHeaderSize - 4)) != crc) return corrupt("header checksum mismatch");
  if (version != kJournalVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("journal '", path, "' has version ", version, "; this build reads version ", kJournalVersion));
  }
  if (gen != generation) return corrupt(absl::StrCat("header says generation ", gen, ", expected ", generation));
  ReplayResult r;
  size_t off = kHeaderSize;
  while (off < data.size()) {
    size_t end = 0;
    std::optional<std::string_view> payload = RecordAt(data, off, &end);
    if (!payload) {
      if (ValidRecordAfter(data, off + 1)) {
        return corrupt(absl::StrCat("record ", r.records + 1, " at byte ", off,
                                    " is cut short or fails its checksum, and valid records follow it"));
      }
      r.torn = true;
      break;
    }
    if (absl::Status s = ApplyRecord(e, *payload); !s.ok()) {
      return corrupt(absl::StrCat("record ", r.records + 1, " at byte ", off, ": ", s.message()));
    }
    ++r.records;
    off = end;
  }
  r.valid_end = off;
  return r;
}

}  // namespace
}  // namespace internal

using internal::FileJournal;

absl::StatusOr<std::unique_ptr<Engine>> Engine::OpenDurable(const std::string& directory, EngineConfig config,
                                                            uint64_t seed, JournalOptions options) {
  if (directory.empty()) return absl::InvalidArgumentError("journal directory is empty");
  if (options.group_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("JournalOptions.group_interval must be >= 0");
  }
  if (::mkdir(directory.c_str(), 0755) != 0 && errno != EEXIST) {
    return internal::Errno("cannot create journal directory", directory, errno);
  }
  struct stat st;
  if (::stat(directory.c_str(), &st) != 0) return internal::Errno("cannot stat", directory, errno);
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("'", directory, "' is not a directory"));
  }
  // Two engines appending to one journal would interleave their records.
  const std::string lock_path = internal::JoinPath(directory, "LOCK");
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return internal::Errno("cannot open", lock_path, errno);
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(lock_fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("journal directory '", directory, "' is open by another engine (", lock_path, " is locked)"));
    }
    return internal::Errno("cannot lock", lock_path, err);
  }
  auto journal = std::make_unique<FileJournal>(directory, lock_fd, options);  // owns lock_fd

  absl::StatusOr<std::vector<std::string>> names = internal::ListDir(directory);
  if (!names.ok()) return names.status();
  std::optional<uint64_t> latest;
  for (const std::string& n : *names) {
    if (std::optional<uint64_t> g = internal::ParseGeneration(n, "snapshot-", ".mrs")) {
      latest = std::max(latest.value_or(0), *g);
    }
  }

  std::unique_ptr<Engine> engine;
  uint64_t generation = 1;
  uint64_t records = 0;
  uint64_t bytes = internal::kHeaderSize;
  absl::StatusOr<int> fd;
  if (!latest) {
    absl::StatusOr<std::unique_ptr<Impl>> impl = internal::MakeImpl(std::move(config), seed);
    if (!impl.ok()) return impl.status();
    engine.reset(new Engine(*std::move(impl)));
    {
      absl::MutexLock lock(&engine->impl_->mu);
      if (absl::Status s = internal::SaveLocked(*engine->impl_, internal::JoinPath(directory,
                                                                                   internal::SnapshotName(1)));
          !s.ok()) {
        return s;
      }
    }
    fd = internal::CreateJournal(directory, 1);
    if (!fd.ok()) return fd.status();
    journal->info().created = true;
  } else {
    generation = *latest;
    absl::StatusOr<std::unique_ptr<Impl>> impl =
        internal::LoadImpl(internal::JoinPath(directory, internal::SnapshotName(generation)));
    if (!impl.ok()) return impl.status();
    engine.reset(new Engine(*std::move(impl)));
    const std::string path = internal::JoinPath(directory, internal::JournalName(generation));
    absl::StatusOr<std::string> data = internal::ReadFile(path);
    if (absl::IsNotFound(data.status())) {
      // A crash between a compaction's snapshot and its journal: the snapshot
      // holds everything.
      fd = internal::CreateJournal(directory, generation);
      if (!fd.ok()) return fd.status();
    } else if (!data.ok()) {
      return data.status();
    } else {
      absl::StatusOr<internal::ReplayResult> r = internal::Replay(*engine, path, *data, generation);
      if (!r.ok()) return r.status();
      const int afd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (afd < 0) return internal::Errno("cannot open journal", path, errno);
      fd = afd;
      if (r->torn) {
        if (::ftruncate(afd, static_cast<off_t>(r->valid_end)) != 0 || internal::DataSync(afd) != 0) {
          const int err = errno;
          ::close(afd);
          return internal::Errno("cannot truncate the torn end of journal", path, err);
        }
      }
      records = r->records;
      bytes = r->valid_end;
      journal->info().records_replayed = r->records;
      journal->info().torn_tail_dropped = r->torn;
    }
  }
  FileJournal::RemoveStale(directory, generation);
  absl::MutexLock lock(&engine->impl_->mu);
  journal->Attach(engine->impl_.get(), *fd, generation, records, bytes);
  engine->impl_->journal = std::move(journal);
  return engine;
}

absl::Status Engine::Compact() {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->journal == nullptr) return absl::FailedPreconditionError("Compact: the engine is not durable");
  return static_cast<FileJournal*>(impl_->journal.get())->Compact(*impl_);
}

absl::Status Engine::Sync() {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->journal == nullptr) return absl::FailedPreconditionError("Sync: the engine is not durable");
  return static_cast<FileJournal*>(impl_->journal.get())->Sync();
}

std::optional<JournalInfo> Engine::journal_info() const {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->journal == nullptr) return std::nullopt;
  return static_cast<const FileJournal*>(impl_->journal.get())->Snapshot();
}

}  // namespace mailretry
