// run_lock.cpp: taking run.dir's lock (flock and record), taking over a dead holder's, every
// rank's check that it sees the same lock, and the release.
#include "launcher/run_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "launcher/clock_text.h"
#include "parallel/comm/consensus.h"
#include "runtime/error.h"
#include "runtime/posix_file.h"

namespace nupipe::launcher {

namespace fs = std::filesystem;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string read_fd(int fd) {
  std::string out;
  char buf[4096];
  for (off_t at = 0;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    at += n;
  }
  return out;
}

const char* kHint =
    "use another run.dir (--set run.dir=DIR), or stop the run that holds it first (kill -USR1 "
    "its mpirun: it saves a checkpoint and exits; then relaunch to continue it)";

}  // namespace

std::string LockRecord::describe() const {
  return "rank 0 on host " + host + ", pid " + std::to_string(pid) + ", since " + since +
         " (" + std::to_string(ranks) + " rank" + (ranks == 1 ? "" : "s") + ")";
}

std::string lock_record_json(const LockRecord& r) {
  const nlohmann::ordered_json j = {{"host", r.host},   {"pid", r.pid},
                                    {"since", r.since}, {"since_unix", r.since_unix},
                                    {"ranks", r.ranks}, {"id", r.id}};
  return j.dump(2) + "\n";
}

bool parse_lock_record(const std::string& text, LockRecord* r) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    r->host = j.at("host").get<std::string>();
    r->pid = j.at("pid").get<int>();
    r->since = j.at("since").get<std::string>();
    r->since_unix = j.at("since_unix").get<double>();
    r->ranks = j.at("ranks").get<int>();
    r->id = j.at("id").get<std::string>();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

RunLock::RunLock(const std::string& run_dir, const parallel::World& world,
                 parallel::MpiCommunicator& comm)
    : dir_(run_dir) {
  try {
    check_all_ranks(world, comm);
  } catch (...) {
    release();  // a constructor that throws runs no destructor
    throw;
  }
}

void RunLock::check_all_ranks(const parallel::World& world, parallel::MpiCommunicator& comm) {
  parallel::agree(comm, [&] {
    if (world.is_root()) acquire(world);
  });
  // Every rank must see the record rank 0 wrote: one run.dir, shared by all.
  const std::string text = comm.broadcast_text(world.is_root() ? lock_record_json(record_) : "");
  parse_lock_record(text, &record_);
  parallel::agree(comm, [&] {
    if (world.is_root()) return;
    LockRecord seen;
    // A shared filesystem may show another host's new file a moment late.
    for (int i = 0; i < 40; ++i) {
      if (parse_lock_record(read_text(path()), &seen) && seen.id == record_.id) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const std::string sees =
        seen.id.empty() ? "missing or unreadable" : "held by " + seen.describe();
    throw usage_error("rank " + std::to_string(world.rank()) + " on host " + world.host() +
                          " does not see the lock rank 0 took on run.dir (" + path() + ": " +
                          sees + ")",
                      "run.dir must be one directory on a filesystem every rank shares (the "
                      "checkpoints, heartbeats and trace need it too); use a shared path");
  });
}

void RunLock::acquire(const parallel::World& world) {
  std::error_code ec;
  created_dir_ = !fs::exists(dir_, ec);
  fs::create_directories(dir_, ec);
  if (ec) {
    throw usage_error("cannot create run.dir " + dir_ + ": " + ec.message(),
                      "choose a writable directory with --set run.dir=DIR");
  }
  const std::string lock_path = path();
  // The file is removed on release: a lock taken on a file that was just removed (or
  // replaced) is dropped and taken again on the file the path names now.
  for (int attempt = 0;; ++attempt) {
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      throw usage_error("cannot open run.dir's lock " + lock_path + ": " +
                            runtime::errno_text(errno),
                        "check that run.dir is writable, or choose another with --set "
                        "run.dir=DIR");
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string held = read_fd(fd);
      ::close(fd);
      if (err == EWOULDBLOCK) {
        LockRecord holder;
        const std::string who = parse_lock_record(held, &holder)
                                    ? holder.describe()
                                    : "a process that is writing its record now";
        throw usage_error("run.dir " + dir_ + " is in use by a live run: " + who +
                              "; nothing in it was changed",
                          kHint);
      }
      throw usage_error("cannot lock " + lock_path + ": " + runtime::errno_text(err) +
                            " (the filesystem does not support flock)",
                        "mount it with locking (NFS without 'nolock', Lustre with -o flock), "
                        "or choose a run.dir on a filesystem that has locks");
    }
    struct stat by_fd {}, by_path {};
    if (::fstat(fd, &by_fd) == 0 && ::stat(lock_path.c_str(), &by_path) == 0 &&
        by_fd.st_ino == by_path.st_ino && by_fd.st_dev == by_path.st_dev) {
      fd_ = fd;
      break;
    }
    ::close(fd);
    if (attempt >= 20) {
      throw usage_error("run.dir's lock " + lock_path + " keeps being replaced while it is "
                        "taken",
                        kHint);
    }
  }

  // A record in an unlocked file: its holder ended without releasing it (killed, crashed).
  const std::string left = read_fd(fd_);
  LockRecord old;
  if (!left.empty()) {
    if (!parse_lock_record(left, &old)) {
      notes_.push_back("run.dir lock: took over " + lock_path + ", which held an unreadable "
                       "record and no lock");
    } else if (old.host == world.host()) {
      const bool pid_alive = ::kill(old.pid, 0) == 0 || errno == EPERM;
      notes_.push_back("run.dir lock: taken over from " + old.describe() + ": that process " +
                       (pid_alive ? "no longer holds it (its pid is now another process's)"
                                  : "is gone") +
                       " (killed or crashed without releasing it)");
    } else {
      // Another host: the flock was free, but does this filesystem carry locks between
      // hosts? If the holder's heartbeat still moves, it does not, and the holder is alive.
      const std::string beat = dir_ + "/heartbeat/rank_00000";
      // Sampled over 1.2 s (> 2 heartbeats); a read that catches the file empty (a writer that
      // truncates before it writes) counts as no sample rather than as a stopped heart.
      std::string first;
      bool moves = false;
      for (int i = 0; i <= 6 && !moves; ++i) {
        if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        const std::string now = read_text(beat);
        if (now.empty()) continue;
        if (first.empty()) first = now;
        moves = now != first;
      }
      if (moves) {
        ::close(fd_);
        fd_ = -1;
        throw usage_error("run.dir " + dir_ + " is in use by a live run: " + old.describe() +
                              ", whose heartbeat still moves, although " + lock_path +
                              " is not locked: this filesystem's locks do not reach across "
                              "hosts; nothing in run.dir was changed",
                          std::string(kHint) + "; and mount run.dir's filesystem with locking "
                          "(NFS without 'nolock', Lustre with -o flock)");
      }
      notes_.push_back("run.dir lock: taken over from " + old.describe() + ": its lock was "
                       "released and its heartbeat has stopped (killed or crashed)");
    }
  }

  record_.host = world.host();
  record_.pid = static_cast<int>(::getpid());
  record_.since_unix = unix_now();
  record_.since = utc_text(record_.since_unix);
  record_.ranks = world.size();
  record_.id = record_.host + ":" + std::to_string(record_.pid) + ":" +
               std::to_string(static_cast<long long>(record_.since_unix * 1e9));
  const std::string text = lock_record_json(record_);
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, text.data(), text.size(), 0) !=
                                      static_cast<ssize_t>(text.size()) ||
      ::fsync(fd_) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw usage_error("cannot write run.dir's lock record " + lock_path + ": " +
                          runtime::errno_text(err),
                      "check that run.dir is writable and has free space");
  }
}

RunLock::~RunLock() { release(); }

void RunLock::release() {
  if (fd_ < 0) return;
  // Removed while still locked: whoever opened the old file finds it replaced and retries.
  ::unlink(path().c_str());
  ::close(fd_);
  fd_ = -1;
  if (created_dir_) {
    std::error_code ec;
    fs::remove(dir_, ec);  // only when empty: a run refused before writing anything
  }
}

}  // namespace nupipe::launcher
