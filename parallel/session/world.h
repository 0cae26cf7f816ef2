// world.h: the MPI session (RAII init/finalize) and this process's place in the world:
// rank, size, and how many ranks share its host (for default thread counts).
#pragma once

#include <string>

namespace nupipe::parallel {

class World {
 public:
  // Initialises MPI (works with or without mpirun: a singleton run is one rank). With
  // threads_multiple, asks for MPI_THREAD_MULTIPLE (a second thread making MPI calls of its
  // own: checkpoint.async's background save); otherwise MPI_Init, as a single-threaded user.
  World(int* argc, char*** argv, bool threads_multiple = false);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& host() const { return host_; }
  bool is_root() const { return rank_ == 0; }

  // Ends every rank of the job now with `code` (for failures the other ranks cannot know
  // about, so none is left waiting in a collective).
  [[noreturn]] void abort(int code) const;

  // The thread support MPI provides (MPI_THREAD_SINGLE .. MPI_THREAD_MULTIPLE, as MPI numbers
  // them), its name ("MPI_THREAD_MULTIPLE"), and whether a second thread may call MPI.
  int thread_level() const { return thread_level_; }
  const char* thread_level_name() const;
  bool threads_multiple() const;

  // Hardware threads of this host shared evenly among the ranks on it (at least 1).
  int default_threads() const;

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  int thread_level_ = 0;
  std::string host_;
};

}  // namespace nupipe::parallel
