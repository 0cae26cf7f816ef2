// check.cpp: where_am_i() and the common failure path of the checked-call macros.
#include "runtime/check.h"

#include <unistd.h>

#include <cstdlib>
#include <sstream>

namespace nupipe {

std::string where_am_i() {
  const char* rank = nullptr;
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    if ((rank = std::getenv(var)) != nullptr) break;
  }
  char host[256] = "unknown-host";
  gethostname(host, sizeof(host) - 1);
  return std::string("rank ") + (rank ? rank : "0") + " on " + host;
}

void fail(ExitCode code, const char* statement, const char* file, int line,
          const std::string& detail, const std::string& hint) {
  std::ostringstream msg;
  msg << detail << " [" << statement << " at " << file << ":" << line << ", " << where_am_i()
      << "]";
  throw Error(code, msg.str(), hint);
}

}  // namespace nupipe
