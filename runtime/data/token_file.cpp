// token_file.cpp: opening (mmap + validation) and atomic writing of llm.c-format token files.
// Every refusal names the file, the field or byte offset, and what to do about it.
#include "runtime/data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "runtime/check.h"
#include "runtime/error.h"
#include "runtime/posix_file.h"

namespace nupipe::runtime {

// Tokens are used in place from the mapping, so the host must share the file's byte order.
static_assert(std::endian::native == std::endian::little,
              "token files are little endian; nupipe reads them in place");

namespace {

std::string regenerate_hint(const std::string& path) {
  return "regenerate it with `nupipe data prepare --text FILE --out " + path + "`";
}

// A path for the token file made from `path`'s text: a new name beside it, never `path`
// itself (input.txt -> input.bin; input.bin -> input.tokens.bin).
std::string token_file_name_for(const std::string& path) {
  std::filesystem::path p(path);
  std::filesystem::path out = p;
  out.replace_extension(".bin");
  if (out == p) out = std::filesystem::path(path + ".tokens.bin");
  return out.string();
}

// The first bytes look like text (no NUL, no control characters but tab, CR, LF, FF).
bool looks_like_text(const unsigned char* bytes, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char c = bytes[i];
    if (c == 0 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') || c == 0x7f) {
      return false;
    }
  }
  return n > 0;
}

std::string bad_magic_hint(const std::string& path, bool text) {
  const std::string out = token_file_name_for(path);
  return std::string(text ? "this looks like a text file: " : "") +
         "make a token file from the text with `nupipe data prepare --text " +
         (text ? path : std::string("TEXT")) + " --out " + out + "` (a new file; " + path +
         " is left as it is) and point data.train / data.val at " + out;
}

int32_t read_le_i32(const unsigned char* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));  // little endian host (static_assert above)
  return v;
}

}  // namespace

TokenFile::TokenFile(const std::string& path, int vocab_size) : path_(path) {
  NUPIPE_CHECK(vocab_size > 0, "vocab_size must be positive, got " + std::to_string(vocab_size));
  const std::string what = "token file " + path + ": ";

  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    throw data_error("cannot open token file " + path + ": " + errno_text(err),
                     "check the path (data.train / data.val); create a token file with "
                     "`nupipe data prepare --text FILE --out FILE.bin`");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    int err = errno;
    throw data_error("cannot stat token file " + path + ": " + errno_text(err),
                     "check that the file is readable");
  }
  if (!S_ISREG(st.st_mode)) {
    throw data_error(what + "not a regular file", "point data.train / data.val at a token file");
  }
  const int64_t file_bytes = st.st_size;
  if (file_bytes < kTokenFileHeaderBytes) {
    unsigned char head[kTokenFileHeaderBytes];
    const ssize_t got = ::pread(fd.get(), head, sizeof head, 0);
    throw data_error(what + "shorter than the header: the file has " + std::to_string(file_bytes) +
                         " bytes, the header alone needs " + std::to_string(kTokenFileHeaderBytes),
                     got > 0 && looks_like_text(head, got) ? bad_magic_hint(path, true)
                                                           : regenerate_hint(path));
  }

  map_ = ::mmap(nullptr, static_cast<size_t>(file_bytes), PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map_ == MAP_FAILED) {
    int err = errno;
    map_ = nullptr;
    throw data_error("cannot mmap token file " + path + " (" + std::to_string(file_bytes) +
                         " bytes): " + errno_text(err),
                     "check the file system and the process's address-space limit (ulimit -v)");
  }
  map_bytes_ = static_cast<size_t>(file_bytes);
  // From here on the destructor is not run if we throw, so release the mapping ourselves.
  try {
    const auto* bytes = static_cast<const unsigned char*>(map_);
    const int32_t magic = read_le_i32(bytes + 0);
    if (magic != kTokenFileMagic) {
      throw data_error(what + "bad magic number " + std::to_string(magic) +
                           " at byte offset 0 (header[0]); expected " +
                           std::to_string(kTokenFileMagic) + " (an llm.c token file)",
                       bad_magic_hint(path, looks_like_text(bytes, std::min<int64_t>(
                                                                      file_bytes, 512))));
    }
    const int32_t version = read_le_i32(bytes + 4);
    if (version != kTokenFileVersion) {
      throw data_error(what + "unsupported version " + std::to_string(version) +
                           " at byte offset 4 (header[1]); expected " +
                           std::to_string(kTokenFileVersion) +
                           " (uint16 tokens; version 2 with uint32 tokens is not supported)",
                       regenerate_hint(path));
    }
    const int32_t count = read_le_i32(bytes + 8);
    if (count < 2) {
      throw data_error(what + "too few tokens: header[2] at byte offset 8 says " +
                           std::to_string(count) +
                           "; at least 2 are needed (an input and its target)",
                       "use a longer text; " + regenerate_hint(path));
    }
    const int64_t expected = kTokenFileHeaderBytes + 2 * int64_t{count};
    if (file_bytes != expected) {
      throw data_error(
          what + (file_bytes < expected ? "truncated" : "trailing bytes") + ": header says " +
              std::to_string(count) + " tokens (" + std::to_string(expected) +
              " bytes) but file has " + std::to_string(file_bytes) + " bytes",
          file_bytes < expected
              ? "the file was cut short (interrupted copy or write?); " + regenerate_hint(path)
              : "the header's token count (header[2], byte offset 8) does not "
                "match the data; " +
                    regenerate_hint(path));
    }
    tokens_ = reinterpret_cast<const uint16_t*>(bytes + kTokenFileHeaderBytes);
    n_tokens_ = count;

    // Scan every token; report the first bad one and the largest id for the hint.
    int64_t first_bad = -1;
    uint16_t max_id = 0;
    for (int64_t i = 0; i < n_tokens_; ++i) {
      const uint16_t t = tokens_[i];
      if (t > max_id) max_id = t;
      if (first_bad < 0 && t >= vocab_size) first_bad = i;
    }
    if (first_bad >= 0) {
      const int64_t offset = kTokenFileHeaderBytes + 2 * first_bad;
      throw data_error(what + "token id " + std::to_string(tokens_[first_bad]) +
                           " at token index " + std::to_string(first_bad) + " (byte offset " +
                           std::to_string(offset) + ") is >= vocab_size " +
                           std::to_string(vocab_size),
                       "set model.vocab_size >= " + std::to_string(int{max_id} + 1) +
                           " (the largest token id in the file is " + std::to_string(max_id) +
                           "), or tokenize the data with the model's tokenizer");
    }
  } catch (...) {
    unmap();
    throw;
  }
}

TokenFile::~TokenFile() { unmap(); }

TokenFile::TokenFile(TokenFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      tokens_(std::exchange(other.tokens_, nullptr)),
      n_tokens_(std::exchange(other.n_tokens_, 0)) {}

TokenFile& TokenFile::operator=(TokenFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    tokens_ = std::exchange(other.tokens_, nullptr);
    n_tokens_ = std::exchange(other.n_tokens_, 0);
  }
  return *this;
}

void TokenFile::unmap() noexcept {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
  n_tokens_ = 0;
}

void write_token_file(const std::string& path, const uint16_t* tokens, int64_t n) {
  NUPIPE_CHECK(n >= 0, "negative token count " + std::to_string(n));
  NUPIPE_CHECK(n == 0 || tokens != nullptr, "null token pointer");
  if (n >= kTokenFileMaxTokens) {
    throw data_error("cannot write token file " + path + ": " + std::to_string(n) +
                         " tokens; the format holds at most 2^31 - 1 (the count is an int32)",
                     "split the corpus into several files");
  }
  const std::string tmp = path + ".tmp";
  auto fail = [&](const std::string& action, int err) -> Error {
    ::unlink(tmp.c_str());
    return data_error("cannot write token file " + path + ": " + action + " " + tmp +
                          " failed: " + errno_text(err),
                      "check that the directory exists, is writable and has free space");
  };

  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    int err = errno;
    // Nothing was created, so there is nothing to unlink (and tmp may be someone else's).
    throw data_error(
        "cannot write token file " + path + ": creating " + tmp + " failed: " + errno_text(err),
        "check that the directory exists, is writable and has free space");
  }
  std::vector<int32_t> header(kTokenFileHeaderInts, 0);
  header[0] = kTokenFileMagic;
  header[1] = kTokenFileVersion;
  header[2] = static_cast<int32_t>(n);
  if (!write_all(fd.get(), header.data(), header.size() * sizeof(int32_t)))
    throw fail("writing", errno);
  if (n > 0 && !write_all(fd.get(), tokens, static_cast<size_t>(n) * sizeof(uint16_t))) {
    throw fail("writing", errno);
  }
  if (::fsync(fd.get()) != 0) throw fail("fsync of", errno);
  if (fd.close() != 0) throw fail("closing", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw fail("renaming into place", errno);

  // Make the rename itself durable; a failure here leaves a complete file, so it is not fatal.
  fsync_path(parent_dir(path), /*directory=*/true);
}

}  // namespace nupipe::runtime
