// printable.h: text safe to show and to store in JSON: valid UTF-8 passes unchanged, and each
// byte that is not part of a valid UTF-8 sequence (a path or value of other bytes) is written
// as \xNN, so no message ever echoes raw bytes to a terminal or a log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nupipe {

// The offset of the first byte that does not start or continue a valid UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are invalid); npos when none.
size_t first_invalid_utf8(std::string_view text);

// `text` with every invalid byte written as \xNN (two hex digits, lower case).
std::string printable(std::string_view text);

}  // namespace nupipe
