// world.cpp: MPI session lifetime and host-local rank discovery.
#include "parallel/session/world.h"

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "parallel/session/mpi_check.h"

namespace nupipe::parallel {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, len);
}

World::World(int* argc, char*** argv, bool threads_multiple) {
  if (threads_multiple) {
    NUPIPE_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_));
  } else {
    NUPIPE_MPI(MPI_Init(argc, argv));
    NUPIPE_MPI(MPI_Query_thread(&thread_level_));
  }
  // Errors come back as codes so NUPIPE_MPI can report them; MPI does not abort for us.
  NUPIPE_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  NUPIPE_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
  NUPIPE_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size_));
  MPI_Comm local;
  NUPIPE_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL,
                                 &local));
  NUPIPE_MPI(MPI_Comm_rank(local, &local_rank_));
  NUPIPE_MPI(MPI_Comm_size(local, &local_size_));
  MPI_Comm_free(&local);
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  NUPIPE_MPI(MPI_Get_processor_name(name, &len));
  host_.assign(name, len);
}

World::~World() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void World::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps the promise if it ever did
}

const char* World::thread_level_name() const {
  switch (thread_level_) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
    default: return "an unknown MPI thread level";
  }
}

bool World::threads_multiple() const { return thread_level_ >= MPI_THREAD_MULTIPLE; }

int World::default_threads() const {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, local_size_));
}

}  // namespace nupipe::parallel
