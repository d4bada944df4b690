// File: engine/durable/journal.cc
// The engine's durable mode: Engine::OpenDurable / Compact / Sync and the
// journal file (format and guarantees in journal.h). A record is a command
// and a fingerprint of its result (internal/record_codec.h); replay
// re-executes the commands through the engine's one command path.

#include "mailretry/engine/durable/journal.h"

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
#include <mutex>
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
#include "mailretry/common/internal/binary_io.h"
#include "mailretry/common/internal/crc32c.h"
#include "mailretry/common/internal/file_io.h"
#include "mailretry/engine/durable/internal/journal_replay.h"
#include "mailretry/engine/durable/internal/record_codec.h"
#include "mailretry/engine/engine.h"
#include "mailretry/engine/internal/commands.h"
#include "mailretry/engine/internal/execute.h"
#include "mailretry/engine/internal/state.h"
#include "mailretry/reply/reply.h"
#include "re2/re2.h"  // Impl owns compiled RE2s; destroying one here needs the type

namespace mailretry {
namespace internal {
namespace {

std::string JoinPath(const std::string& dir, std::string_view name) {
  return absl::StrCat(dir, "/", std::string(name));
}
std::string SnapshotName(uint64_t g) { return absl::StrCat("snapshot-", g, ".mrs"); }
std::string JournalName(uint64_t g) { return absl::StrCat("journal-", g, ".mrj"); }

int DataSync(int fd) {
#if defined(__linux__)
  // Appends change the size, which fdatasync flushes too; the timestamps it
  // skips are not needed to read the journal back.
  return ::fdatasync(fd);
#else
  return ::fsync(fd);
#endif
}

// "<prefix><digits><suffix>" -> digits; nullopt otherwise.
std::optional<uint64_t> ParseGeneration(std::string_view name, std::string_view prefix,
                                        std::string_view suffix) {
  if (name.size() <= prefix.size() + suffix.size() || name.substr(0, prefix.size()) != prefix ||
      name.substr(name.size() - suffix.size()) != suffix) {
    return std::nullopt;
  }
  const std::string_view digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
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
  RecordWriter e(&h);
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
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0)
    s = absl::UnavailableError(std::strerror(errno));
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot create journal '", path, "': ", s.message()));
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
      : interval_(std::max(interval, absl::Milliseconds(1))),
        path_(std::move(path)),
        fd_(::dup(fd)) {
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

  void Attach(const Engine::Impl* impl, int fd, uint64_t generation, uint64_t records,
              uint64_t bytes) {
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

  std::string* BeginRecord() override {
    buf_.assign(kFrameSize, '\0');  // crc and length, filled in by CommitRecord
    return &buf_;
  }

  absl::Status CommitRecord() override { return Commit(); }

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
    if (absl::Status s = SaveLocked(impl, snap); !s.ok())
      return s;  // old generation still complete
    absl::StatusOr<int> fd = CreateJournal(dir_, next);
    if (!fd.ok()) {
      // Without journal next, recovery would pick snapshot next and create an
      // empty journal, losing what is appended to the current one from now on.
      if (::unlink(snap.c_str()) != 0 || !SyncDir(dir_).ok()) {
        return Fail(
            absl::UnavailableError(absl::StrCat(fd.status().message(), "; and cannot remove '",
                                                snap, "', so the journal stops accepting calls")));
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
      const bool temp =
          (n.rfind("snapshot-", 0) == 0 && n.find(".mrs.tmp.") != std::string::npos) ||
          (n.rfind("journal-", 0) == 0 && n.size() > 8 && n.substr(n.size() - 8) == ".mrj.tmp");
      if (stale_gen || temp) removed |= ::unlink(JoinPath(dir, n).c_str()) == 0;
    }
    if (removed) SyncDir(dir).IgnoreError();
  }

  std::string Path() const { return JoinPath(dir_, JournalName(info_.generation)); }

 private:
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
      return Fail(absl::UnavailableError(
          absl::StrCat("cannot append to journal '", Path(), "': ", s.message())));
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

}  // namespace
}  // namespace internal

using internal::FileJournal;

absl::StatusOr<std::unique_ptr<Engine>> Engine::OpenDurable(const std::string& directory,
                                                            EngineConfig config, uint64_t seed,
                                                            JournalOptions options) {
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
      return absl::FailedPreconditionError(absl::StrCat("journal directory '", directory,
                                                        "' is open by another engine (", lock_path,
                                                        " is locked)"));
    }
    return internal::Errno("cannot lock", lock_path, err);
  }
  auto journal = std::make_unique<FileJournal>(directory, lock_fd, options);  // owns lock_fd

  absl::StatusOr<std::vector<std::string>> names = internal::ListDir(directory);
  if (!names.ok()) return names.status();
  std::optional<uint64_t> latest;
  std::vector<uint64_t> journals;
  for (const std::string& n : *names) {
    if (std::optional<uint64_t> g = internal::ParseGeneration(n, "snapshot-", ".mrs")) {
      latest = std::max(latest.value_or(0), *g);
    } else if (std::optional<uint64_t> j = internal::ParseGeneration(n, "journal-", ".mrj")) {
      journals.push_back(*j);
    }
  }
  auto has_journal = [&](uint64_t g) {
    return std::find(journals.begin(), journals.end(), g) != journals.end();
  };
  auto refuse = [&](absl::string_view why) {
    return absl::DataLossError(
        absl::StrCat("journal directory '", directory, "' ", why,
                     "; refusing to open it so that nothing in it is overwritten"));
  };
  // Creation writes journal-1 before snapshot-1 (see below), so a snapshot
  // always had its journal, and a journal without any snapshot is either an
  // interrupted creation (no records: nothing was acknowledged) or a loss.
  for (uint64_t j : journals) {
    if (latest && j <= *latest) continue;
    if (!latest && j == 1 && journals.size() == 1) {
      absl::StatusOr<std::string> data =
          internal::ReadFile(internal::JoinPath(directory, internal::JournalName(1)));
      if (!data.ok()) return data.status();
      if (data->size() == internal::kHeaderSize && *data == internal::JournalHeader(1)) continue;
    }
    return refuse(absl::StrCat(
        "holds ", internal::JournalName(j), " but ",
        latest ? absl::StrCat("its latest snapshot is ", internal::SnapshotName(*latest))
               : std::string("no snapshot")));
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
    // The journal first: a snapshot on disk then always implies its journal
    // existed, which is what lets a missing journal be detected as a loss.
    fd = internal::CreateJournal(directory, 1);
    if (!fd.ok()) return fd.status();
    {
      std::lock_guard lock(engine->impl_->mu);
      if (absl::Status s = internal::SaveLocked(
              *engine->impl_, internal::JoinPath(directory, internal::SnapshotName(1)));
          !s.ok()) {
        ::close(*fd);
        return s;
      }
    }
    journal->info().created = true;
  } else {
    generation = *latest;
    absl::StatusOr<std::unique_ptr<Impl>> impl =
        internal::LoadImpl(internal::JoinPath(directory, internal::SnapshotName(generation)));
    if (!impl.ok()) return impl.status();
    if (options.reopen == JournalOptions::Reopen::kRequireSame &&
        internal::EncodeConfig((*impl)->config, (*impl)->seed) !=
            internal::EncodeConfig(config, seed)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "journal directory '", directory, "' holds an engine with ",
          (*impl)->seed != seed ? absl::StrCat("seed ", (*impl)->seed, " (not ", seed, ")")
                                : std::string("another configuration"),
          "; the saved configuration and seed are the ones a reopen uses: pass the same ones, or "
          "none"));
    }
    engine.reset(new Engine(*std::move(impl)));
    const std::string path = internal::JoinPath(directory, internal::JournalName(generation));
    absl::StatusOr<std::string> data = internal::ReadFile(path, "journal");
    if (absl::IsNotFound(data.status())) {
      // Only a compaction interrupted after its snapshot and before its
      // journal leaves this, and then the previous journal is still there
      // (it is removed after the new one exists); the snapshot holds
      // everything. Otherwise the calls journaled since the snapshot are gone.
      if (generation == 0 || !has_journal(generation - 1)) {
        return refuse(absl::StrCat("holds ", internal::SnapshotName(generation),
                                   " but not its journal ", internal::JournalName(generation),
                                   " (the calls made since that snapshot would be lost)"));
      }
      fd = internal::CreateJournal(directory, generation);
      if (!fd.ok()) return fd.status();
    } else if (!data.ok()) {
      return data.status();
    } else {
      absl::StatusOr<internal::ReplayResult> r =
          internal::ReplayJournal(*engine->impl_, path, *data, generation);
      if (!r.ok()) return r.status();
      const int afd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (afd < 0) return internal::Errno("cannot open journal", path, errno);
      fd = afd;
      if (r->torn) {
        if (::ftruncate(afd, static_cast<off_t>(r->valid_end)) != 0 ||
            internal::DataSync(afd) != 0) {
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
  std::lock_guard lock(engine->impl_->mu);
  journal->Attach(engine->impl_.get(), *fd, generation, records, bytes);
  engine->impl_->journal = std::move(journal);
  return engine;
}

absl::Status Engine::Compact() {
  std::lock_guard lock(impl_->mu);
  if (impl_->journal == nullptr)
    return absl::FailedPreconditionError("Compact: the engine is not durable");
  return static_cast<FileJournal*>(impl_->journal.get())->Compact(*impl_);
}

absl::Status Engine::Sync() {
  std::lock_guard lock(impl_->mu);
  if (impl_->journal == nullptr)
    return absl::FailedPreconditionError("Sync: the engine is not durable");
  return static_cast<FileJournal*>(impl_->journal.get())->Sync();
}

std::optional<JournalInfo> Engine::journal_info() const {
  std::lock_guard lock(impl_->mu);
  if (impl_->journal == nullptr) return std::nullopt;
  return static_cast<const FileJournal*>(impl_->journal.get())->Snapshot();
}

}  // namespace mailretry
