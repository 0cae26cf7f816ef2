// test_printable.cpp: the UTF-8 validator against RFC 3629's edge cases, the \xNN escaping,
// and Error's messages made printable (a path of other bytes never reaches a terminal raw).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "runtime/error.h"
#include "runtime/printable.h"

namespace nupipe {
namespace {

TEST(Printable, ValidUtf8PassesUnchanged) {
  for (const std::string s : {"", "plain ascii", "caf\xc3\xa9", "\xe2\x82\xac 5",
                              "\xf0\x9f\x98\x80 emoji", "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf"}) {
    EXPECT_EQ(first_invalid_utf8(s), std::string::npos) << s;
    EXPECT_EQ(printable(s), s);
  }
}

TEST(Printable, InvalidBytesAreEscapedOneByOne) {
  struct Case {
    std::string in, out;
    size_t first;
  };
  for (const Case& c : std::vector<Case>{
           {"r\xffx", "r\\xffx", 1},                     // never valid
           {"\xc3", "\\xc3", 0},                         // truncated at the end
           {"a\xc3(", "a\\xc3(", 1},                     // a lead byte without its tail
           {"\x80z", "\\x80z", 0},                       // a lone continuation byte
           {"\xc0\xaf", "\\xc0\\xaf", 0},                // overlong '/'
           {"\xe0\x80\xaf", "\\xe0\\x80\\xaf", 0},       // overlong, 3 bytes
           {"\xed\xa0\x80", "\\xed\\xa0\\x80", 0},       // a UTF-16 surrogate
           {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80", 0},  // above U+10FFFF
           {"ok \xc3\xa9 \xfe", "ok \xc3\xa9 \\xfe", 6},  // valid text kept around it
       }) {
    EXPECT_EQ(first_invalid_utf8(c.in), c.first) << c.out;
    EXPECT_EQ(printable(c.in), c.out);
    EXPECT_EQ(first_invalid_utf8(printable(c.in)), std::string::npos);
    EXPECT_EQ(printable(printable(c.in)), printable(c.in)) << "idempotent";
  }
}

TEST(Printable, ErrorMessagesAreSafeForJsonAndTerminals) {
  const Error e = usage_error("cannot create run.dir r\xffx", "choose another than q\xfe");
  EXPECT_STREQ(e.what(), "cannot create run.dir r\\xffx");
  EXPECT_EQ(e.hint(), "choose another than q\\xfe");
  nlohmann::json j;
  j["reason"] = e.what();
  j["hint"] = e.hint();
  EXPECT_NO_THROW((void)j.dump());  // raw bytes would throw here
  EXPECT_THROW((void)nlohmann::json(std::string("r\xffx")).dump(), nlohmann::json::type_error);
}

}  // namespace
}  // namespace nupipe
