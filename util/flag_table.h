// One table of command-line flags drives parsing, --help (with defaults) and "name = value"
// description lines: flamingo-server's and flamingo-cli's flags are both tables of this kind.
// Header-only, torch-free, gRPC-free. A built table is read-only: parse() is thread-safe.
//
//   FlagTable<MyArgs> t(style);
//   t.integer("--port", "port to listen on", &MyArgs::port, 0, 65535);
//   t.integer("--max-images", "images per request",
//             flags::nested(&MyArgs::limits, &Limits::max_images), 0, 4096);
//   t.choice("--dtype", "compute dtype", &MyArgs::dtype, {"auto", "float32"});
//   t.toggle("--no-cache", "do not cache", &MyArgs::cache, false);
//   MyArgs a;
//   FlagsGiven given = t.parse(argv, 0, a);
//
// Values come as "--name V" or "--name=V"; a switch takes none. Errors (thrown as Error) name
// the flag, the allowed range or choices, and the value.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace flamingo::flags {

struct FlagError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A field of a member: flags::nested(&ServerArgs::limits, &ServerLimits::max_image_bytes).
template <typename Args, typename Sub, typename T>
struct Nested {
  Sub Args::*outer;
  T Sub::*inner;
};
template <typename Args, typename Sub, typename T>
Nested<Args, Sub, T> nested(Sub Args::*outer, T Sub::*inner) {
  return {outer, inner};
}

template <typename Args, typename T>
T& access(Args& a, T Args::*m) {
  return a.*m;
}
template <typename Args, typename T>
const T& access(const Args& a, T Args::*m) {
  return a.*m;
}
template <typename Args, typename Sub, typename T>
T& access(Args& a, Nested<Args, Sub, T> n) {
  return (a.*n.outer).*n.inner;
}
template <typename Args, typename Sub, typename T>
const T& access(const Args& a, Nested<Args, Sub, T> n) {
  return (a.*n.outer).*n.inner;
}

// The type a `where` (member pointer or Nested) of Args refers to.
template <typename Args, typename Where>
using FieldOf = std::remove_cvref_t<decltype(access(std::declval<Args&>(), std::declval<Where>()))>;

template <typename T>
struct Unwrap {  // optional<T> flags parse a T
  using type = T;
};
template <typename T>
struct Unwrap<std::optional<T>> {
  using type = T;
};

// How one program words its errors and lays out its --help.
struct FlagStyle {
  bool pipe_choices = false;  // "expected one of a|b|c" (else "expected a, b or c")
  std::string value_note;     // appended to errors about a value, e.g. " (see --help)"
  size_t column = 30;         // --help: where the help text starts
  size_t width = 0;           // --help: wrap lines at this width (0: never)
  std::string metavar;        // --help: the value's name for every flag (empty: each flag's own)
  std::string empty_default = "-";  // --help: an empty default reads this (empty: not shown)
  std::string default_open = " [", default_close = "]";
};

// Which flags a command line gave, each once, in order.
struct FlagsGiven {
  std::vector<std::string> names;
  bool has(const std::string& name) const {
    for (const std::string& n : names)
      if (n == name) return true;
    return false;
  }
};

template <typename Args>
struct Flag {
  std::string name;   // "--port"
  std::string alias;  // "-h" for --help
  std::string help;
  std::string metavar = "V";  // the value's name in --help
  bool takes_value = true;    // false: a switch
  bool show_default = true;   // --help shows the default value
  bool describe = true;       // listed by describe()
  uint32_t tags = 0;          // the program's own bits (e.g. which commands accept it)
  int section = 0;            // the program's own --help section
  std::function<void(Args&, const std::string&)> set;  // parse, check, store (throws)
  std::function<std::string(const Args&)> show;        // the value as text

  Flag& meta(std::string m) { return metavar = std::move(m), *this; }
  Flag& with_tags(uint32_t t) { return tags = t, *this; }
  Flag& in_section(int s) { return section = s, *this; }
  Flag& no_default() { return show_default = false, *this; }
};

template <typename Args, typename Error = FlagError>
class FlagTable {
 public:
  using args_type = Args;
  using error_type = Error;
  using FlagT = Flag<Args>;

  explicit FlagTable(FlagStyle style = {}) : style_(std::move(style)) {}

  // Any text.
  template <typename Where>
  FlagT& text(const char* name, const char* help, Where where) {
    return add(
        name, help, [where](Args& a, const std::string& v) { access(a, where) = v; },
        [where](const Args& a) { return std::string(access(a, where)); });
  }

  // One of `choices`.
  template <typename Where>
  FlagT& choice(const char* name, const char* help, Where where, std::vector<std::string> choices) {
    std::string list;  // "a, b or c" / "one of a|b|c"
    std::string pipes;
    for (size_t i = 0; i < choices.size(); ++i) {
      list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
      pipes += (i == 0 ? "" : "|") + choices[i];
    }
    const std::string expected = "expected " + (style_.pipe_choices ? "one of " + pipes : list);
    FlagT& f = add(
        name, help,
        [note = style_.value_note, name = std::string(name), where, choices, expected](
            Args& a, const std::string& v) {
          for (const std::string& c : choices) {
            if (c == v) {
              access(a, where) = v;
              return;
            }
          }
          fail_value(name, expected, v, note);
        },
        [where](const Args& a) { return std::string(access(a, where)); });
    return f.meta(pipes);
  }

  // An integer (any integral type, or an optional of one) in [lo, hi].
  template <typename Where, typename T = typename Unwrap<FieldOf<Args, Where>>::type>
  FlagT& integer(const char* name, const char* help, Where where,
                 std::type_identity_t<T> lo = std::numeric_limits<T>::min(),
                 std::type_identity_t<T> hi = std::numeric_limits<T>::max()) {
    static_assert(std::is_integral_v<T>);
    const bool bounded = lo != std::numeric_limits<T>::min() || hi != std::numeric_limits<T>::max();
    const std::string expected =
        bounded ? "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"
                : "expected an integer";
    return add(
               name, help,
               [note = style_.value_note, name = std::string(name), where, lo, hi, expected](
                   Args& a, const std::string& v) {
                 T out{};
                 const char* end = v.data() + v.size();
                 auto [ptr, ec] = std::from_chars(v.data(), end, out);
                 if (ec != std::errc() || ptr != end || out < lo || out > hi)
                   fail_value(name, expected, v, note);
                 access(a, where) = out;
               },
               [where](const Args& a) { return to_text(access(a, where)); })
        .meta("N");
  }

  // A finite floating-point value (float or double) in [lo, hi].
  template <typename Where, typename T = FieldOf<Args, Where>>
  FlagT& number(const char* name, const char* help, Where where,
                double lo = -std::numeric_limits<double>::infinity(),
                double hi = std::numeric_limits<double>::infinity()) {
    static_assert(std::is_floating_point_v<T>);
    std::ostringstream expected;
    expected << "expected a number";
    if (std::isfinite(lo) || std::isfinite(hi)) expected << " in [" << lo << ", " << hi << "]";
    return add(
               name, help,
               [note = style_.value_note, name = std::string(name), where, lo, hi,
                expected = expected.str()](Args& a, const std::string& v) {
                 double out = 0;
                 const char* end = v.data() + v.size();
                 auto [ptr, ec] = std::from_chars(v.data(), end, out);
                 const T stored = static_cast<T>(out);  // a float may overflow where a double
                 if (ec != std::errc() || ptr != end || !std::isfinite(stored) || out < lo ||
                     out > hi)
                   fail_value(name, expected, v, note);
                 access(a, where) = stored;
               },
               [where](const Args& a) { return to_text(access(a, where)); })
        .meta("X");
  }

  // A switch: takes no value, stores `value`. Described as "set" when it holds `value`.
  template <typename Where>
  FlagT& toggle(const char* name, const char* help, Where where, bool value = true) {
    FlagT& f = add(
        name, help, [where, value](Args& a, const std::string&) { access(a, where) = value; },
        [where, value](const Args& a) {
          return std::string(access(a, where) == value ? "set" : "unset");
        });
    f.takes_value = false;
    return f;
  }

  // Repeatable: each use appends its value.
  template <typename Where>
  FlagT& repeated(const char* name, const char* help, Where where) {
    return add(
        name, help, [where](Args& a, const std::string& v) { access(a, where).push_back(v); },
        [where](const Args& a) {
          std::string s;
          for (const std::string& v : access(a, where)) s += (s.empty() ? "" : ",") + v;
          return s;
        });
  }

  // A value handled by `set` (which throws Error itself); `show` may be empty.
  FlagT& custom(const char* name, const char* help,
                std::function<void(Args&, const std::string&)> set,
                std::function<std::string(const Args&)> show = {}) {
    if (!show) show = [](const Args&) { return std::string(); };
    return add(name, help, std::move(set), std::move(show));
  }

  // -h / --help: a switch setting `where`, listed as "-h, --help  this text".
  template <typename Where>
  FlagT& help_flag(Where where) {
    FlagT& f = toggle("--help", "this text", where);
    f.alias = "-h";
    f.describe = false;
    return f;
  }

  // Flags added from now on start in this --help section with these tags.
  void next_flags(int section, uint32_t tags) {
    next_section_ = section;
    next_tags_ = tags;
  }

  FlagT& at(const std::string& name) {
    for (FlagT& f : flags_)
      if (f.name == name) return f;
    throw std::logic_error("no flag " + name);
  }
  const std::vector<FlagT>& all() const { return flags_; }
  const FlagStyle& style() const { return style_; }

  // Parses argv[first...] into `args`. A flag not in the table or refused by `accept` is
  // reported by `unknown(arg)` (default: "unknown flag 'ARG'").
  FlagsGiven parse(const std::vector<std::string>& argv, size_t first, Args& args,
                   const std::function<bool(const FlagT&)>& accept = {},
                   const std::function<std::string(const std::string&)>& unknown = {}) const {
    FlagsGiven given;
    for (size_t i = first; i < argv.size(); ++i) {
      std::string name = argv[i];
      std::string value;
      bool inline_value = false;
      if (const size_t eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      const FlagT* flag = nullptr;
      for (const FlagT& f : flags_)
        if (name == f.name || (!f.alias.empty() && name == f.alias)) flag = &f;
      if (flag == nullptr || (accept && !accept(*flag))) {
        throw Error(unknown ? unknown(argv[i])
                            : "unknown flag '" + argv[i] + "'" + style_.value_note);
      }
      if (!flag->takes_value && inline_value) throw Error(flag->name + ": takes no value");
      if (flag->takes_value && !inline_value) {
        if (i + 1 >= argv.size()) throw Error(flag->name + ": needs a value");
        value = argv[++i];
      }
      flag->set(args, value);
      if (!given.has(flag->name)) given.names.push_back(flag->name);
    }
    return given;
  }

  // One line per flag `keep` lets through: name, value name, help and the default.
  std::string help(const Args& defaults, const std::function<bool(const FlagT&)>& keep = {}) const {
    std::string out;
    for (const FlagT& f : flags_) {
      if (keep && !keep(f)) continue;
      std::string left = "  " + (f.alias.empty() ? "" : f.alias + ", ") + f.name;
      if (f.takes_value) left += " " + (style_.metavar.empty() ? f.metavar : style_.metavar);
      std::string text = f.help;
      if (f.takes_value && f.show_default) {
        std::string d = f.show(defaults);
        if (d.empty()) d = style_.empty_default;
        if (!d.empty()) text += style_.default_open + d + style_.default_close;
      }
      out += left;
      if (left.size() > style_.column) {
        out += "\n" + std::string(style_.column, ' ');
      } else {
        out += std::string(std::max<size_t>(1, style_.column - left.size()), ' ');
      }
      out += wrap(text) + "\n";
    }
    return out;
  }

  // "name = value" (without the dashes) for every flag, e.g. for a start-up log.
  std::vector<std::string> describe(const Args& args) const {
    std::vector<std::string> out;
    for (const FlagT& f : flags_)
      if (f.describe) out.push_back(f.name.substr(2) + " = " + f.show(args));
    return out;
  }

  // Throws "FLAG: EXPECTED, got 'VALUE'" plus `note` (custom setters pass style().value_note).
  [[noreturn]] static void fail_value(const std::string& flag, const std::string& expected,
                                      const std::string& value, const std::string& note) {
    throw Error(flag + ": " + expected + ", got '" + value + "'" + note);
  }

 private:
  FlagT& add(const char* name, const char* help, std::function<void(Args&, const std::string&)> set,
             std::function<std::string(const Args&)> show) {
    FlagT f;
    f.name = name;
    f.help = help;
    f.set = std::move(set);
    f.show = std::move(show);
    f.section = next_section_;
    f.tags = next_tags_;
    flags_.push_back(std::move(f));
    return flags_.back();
  }

  template <typename T>
  static std::string to_text(const T& v) {
    if constexpr (requires { v.has_value(); }) {
      return v ? to_text(*v) : std::string();
    } else {
      std::ostringstream s;
      s << v;
      return s.str();
    }
  }

  // Breaks `text` at spaces so that lines end before style_.width; continuation lines start at
  // style_.column.
  std::string wrap(const std::string& text) const {
    if (style_.width <= style_.column + 20) return text;
    const size_t room = style_.width - style_.column;
    std::string out;
    size_t start = 0;
    while (text.size() - start > room) {
      size_t cut = text.rfind(' ', start + room);
      if (cut == std::string::npos || cut <= start) cut = text.find(' ', start + room);
      if (cut == std::string::npos) break;
      out += text.substr(start, cut - start) + "\n" + std::string(style_.column, ' ');
      start = cut + 1;
    }
    return out + text.substr(start);
  }

  FlagStyle style_;
  std::vector<FlagT> flags_;
  int next_section_ = 0;
  uint32_t next_tags_ = 0;
};

}  // namespace flamingo::flags
