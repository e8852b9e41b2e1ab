// util/flag_table.h: every kind of flag, both value forms, ranges and choices with errors that
// name the flag, the range and the value, nested fields, the record of given flags, --help lines
// with defaults, and "name = value" descriptions.
#include "util/flag_table.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace flamingo::flags {
namespace {

struct Limits {
  int64_t bytes = 100;
};

struct Args {
  std::string name = "x";
  std::string mode = "fast";
  int32_t count = 3;
  int64_t big = 0;
  uint64_t id = 0;
  std::optional<uint64_t> seed;
  double ratio = 0.5;
  float scale = 1.f;
  bool cache = true;
  bool verbose = false;
  std::vector<std::string> tags;
  std::string custom;
  Limits limits;
  bool help = false;
};

struct MyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

FlagTable<Args, MyError> make(FlagStyle style = {}) {
  FlagTable<Args, MyError> t(style);
  t.text("--name", "a name", &Args::name).meta("NAME");
  t.choice("--mode", "speed", &Args::mode, {"fast", "slow", "off"});
  t.integer("--count", "how many", &Args::count, 1, 10);
  t.integer("--big", "a big one", &Args::big);
  t.integer("--id", "an id", &Args::id);
  t.integer("--seed", "optional seed", &Args::seed).with_tags(4).in_section(2);
  t.number("--ratio", "a ratio", &Args::ratio, 0, 1);
  t.number("--scale", "a float", &Args::scale);
  t.toggle("--no-cache", "no cache", &Args::cache, false);
  t.toggle("--verbose", "talk", &Args::verbose);
  t.repeated("--tag", "repeatable", &Args::tags);
  t.custom("--custom", "upper-cased", [](Args& a, const std::string& v) {
    if (v.empty()) throw MyError("--custom: empty");
    a.custom = v + "!";
  });
  t.integer("--bytes", "nested", nested(&Args::limits, &Limits::bytes), 1, 1000);
  t.help_flag(&Args::help);
  return t;
}

std::string error_of(const std::vector<std::string>& argv, FlagStyle style = {}) {
  Args a;
  try {
    make(style).parse(argv, 0, a);
  } catch (const MyError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(FlagTable, ParsesEveryKind) {
  Args a;
  const FlagsGiven given = make().parse({"cmd",
                                         "--name",
                                         "n",
                                         "--mode=slow",
                                         "--count",
                                         "10",
                                         "--big",
                                         "-9000000000",
                                         "--id",
                                         "18446744073709551615",
                                         "--seed",
                                         "7",
                                         "--ratio=0.25",
                                         "--scale",
                                         "2.5",
                                         "--no-cache",
                                         "--verbose",
                                         "--tag",
                                         "a",
                                         "--tag=b",
                                         "--custom",
                                         "c",
                                         "--bytes",
                                         "1000",
                                         "--name",
                                         "m"},
                                        1, a);
  EXPECT_EQ(a.name, "m");  // the last one wins
  EXPECT_EQ(a.mode, "slow");
  EXPECT_EQ(a.count, 10);
  EXPECT_EQ(a.big, -9000000000LL);
  EXPECT_EQ(a.id, 18446744073709551615ULL);
  EXPECT_EQ(a.seed, std::optional<uint64_t>(7));
  EXPECT_DOUBLE_EQ(a.ratio, 0.25);
  EXPECT_FLOAT_EQ(a.scale, 2.5f);
  EXPECT_FALSE(a.cache);
  EXPECT_TRUE(a.verbose);
  EXPECT_EQ(a.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(a.custom, "c!");
  EXPECT_EQ(a.limits.bytes, 1000);
  EXPECT_FALSE(a.help);
  EXPECT_EQ(given.names.size(), 13u);  // --name once
  EXPECT_EQ(given.names.front(), "--name");
  EXPECT_TRUE(given.has("--no-cache"));
  EXPECT_FALSE(given.has("--help"));
  Args h;
  EXPECT_TRUE(make().parse({"-h"}, 0, h).has("--help"));
  EXPECT_TRUE(h.help);
}

TEST(FlagTable, ErrorsNameTheFlagTheRangeAndTheValue) {
  EXPECT_EQ(error_of({"--count", "11"}), "--count: expected an integer in [1, 10], got '11'");
  EXPECT_EQ(error_of({"--count", "x"}), "--count: expected an integer in [1, 10], got 'x'");
  EXPECT_EQ(error_of({"--count", "3x"}), "--count: expected an integer in [1, 10], got '3x'");
  EXPECT_EQ(error_of({"--big", "1e3"}), "--big: expected an integer, got '1e3'");
  EXPECT_EQ(error_of({"--id", "-1"}), "--id: expected an integer, got '-1'");
  EXPECT_EQ(error_of({"--id", "18446744073709551616"}),
            "--id: expected an integer, got '18446744073709551616'");
  EXPECT_EQ(error_of({"--ratio", "1.5"}), "--ratio: expected a number in [0, 1], got '1.5'");
  EXPECT_EQ(error_of({"--ratio", "nan"}), "--ratio: expected a number in [0, 1], got 'nan'");
  EXPECT_EQ(error_of({"--scale", "inf"}), "--scale: expected a number, got 'inf'");
  EXPECT_EQ(error_of({"--scale", "1e300"}), "--scale: expected a number, got '1e300'");  // float
  EXPECT_EQ(error_of({"--mode", "medium"}), "--mode: expected fast, slow or off, got 'medium'");
  EXPECT_EQ(error_of({"--bytes", "0"}), "--bytes: expected an integer in [1, 1000], got '0'");
  EXPECT_EQ(error_of({"--count"}), "--count: needs a value");
  EXPECT_EQ(error_of({"--verbose=1"}), "--verbose: takes no value");
  EXPECT_EQ(error_of({"--bogus"}), "unknown flag '--bogus'");
  EXPECT_EQ(error_of({"extra"}), "unknown flag 'extra'");
  EXPECT_EQ(error_of({"--custom", ""}), "--custom: empty");
  FlagStyle server;
  server.pipe_choices = true;
  server.value_note = " (see --help)";
  EXPECT_EQ(error_of({"--mode", "medium"}, server),
            "--mode: expected one of fast|slow|off, got 'medium' (see --help)");
  EXPECT_EQ(error_of({"--bogus=2"}, server), "unknown flag '--bogus=2' (see --help)");
}

TEST(FlagTable, AcceptAndUnknownHooks) {
  const auto t = make();
  Args a;
  const auto only_seed = [](const Flag<Args>& f) { return f.tags == 4; };
  const auto msg = [](const std::string& arg) { return "nope: " + arg; };
  EXPECT_EQ(t.parse({"--seed", "1"}, 0, a, only_seed, msg).names.size(), 1u);
  try {
    t.parse({"--count", "1"}, 0, a, only_seed, msg);
    FAIL();
  } catch (const MyError& e) {
    EXPECT_STREQ(e.what(), "nope: --count");
  }
}

TEST(FlagTable, HelpListsEveryFlagWithItsDefault) {
  const std::string help = make().help(Args{});
  EXPECT_NE(help.find("  --name NAME                 a name [x]\n"), std::string::npos) << help;
  EXPECT_NE(help.find("  --mode fast|slow|off        speed [fast]\n"), std::string::npos);
  EXPECT_NE(help.find("  --count N                   how many [3]\n"), std::string::npos);
  EXPECT_NE(help.find("  --seed N                    optional seed [-]\n"), std::string::npos);
  EXPECT_NE(help.find("  --ratio X                   a ratio [0.5]\n"), std::string::npos);
  EXPECT_NE(help.find("  --no-cache                  no cache\n"), std::string::npos);
  EXPECT_NE(help.find("  --bytes N                   nested [100]\n"), std::string::npos);
  EXPECT_NE(help.find("  -h, --help                  this text\n"), std::string::npos);
  const auto table = make();
  for (const auto& f : table.all()) EXPECT_NE(help.find(f.name), std::string::npos) << f.name;
  // One section, a common value name, long names on their own line, wrapped help.
  FlagStyle s;
  s.column = 12;
  s.width = 40;
  s.metavar = "V";
  s.empty_default = "";
  const std::string section =
      FlagTable<Args>(s).help(Args{}, [](const Flag<Args>&) { return true; });
  EXPECT_EQ(section, "");
  FlagTable<Args> t(s);
  t.text("--long-name", "a very long help text that has to be wrapped somewhere", &Args::name);
  t.integer("--seed", "optional seed", &Args::seed).in_section(2);
  EXPECT_EQ(t.help(Args{}),
            "  --long-name V\n"
            "            a very long help text that\n"
            "            has to be wrapped somewhere\n"
            "            [x]\n"
            "  --seed V  optional seed\n");
  EXPECT_EQ(t.help(Args{}, [](const Flag<Args>& f) { return f.section == 2; }),
            "  --seed V  optional seed\n");
}

TEST(FlagTable, DescribeGivesNameEqualsValue) {
  Args a;
  a.seed = 9;
  a.cache = false;
  a.tags = {"p", "q"};
  const std::vector<std::string> lines = make().describe(a);
  const std::vector<std::string> want = {
      "name = x",  "mode = fast", "count = 3",  "big = 0",        "id = 0",
      "seed = 9",  "ratio = 0.5", "scale = 1",  "no-cache = set", "verbose = unset",
      "tag = p,q", "custom = ",   "bytes = 100"};
  EXPECT_EQ(lines, want);
}

}  // namespace
}  // namespace flamingo::flags
