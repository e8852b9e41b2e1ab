// A minimal, independent parser of the Prometheus text format 0.0.4 for the metrics tests
// (tests/server/metrics_test.cpp, server_metrics_test.cpp): families with HELP and TYPE,
// samples with their labels, and the format's rules checked as it reads (gtest expectations).
// Header-only.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace flamingo::metrics_testing {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped values
  std::string value;                          // as written
};

struct Exposition {
  std::map<std::string, std::string> help;  // unescaped
  std::map<std::string, std::string> type;
  std::vector<Sample> samples;
  std::vector<std::string> family_order;  // families in the order of their TYPE lines

  // The sample with exactly these labels; fails the test when absent.
  const Sample* find(const std::string& name,
                     const std::map<std::string, std::string>& labels) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return &s;
    }
    return nullptr;
  }
  double value(const std::string& name,
               const std::map<std::string, std::string>& labels = {}) const {
    const Sample* s = find(name, labels);
    EXPECT_NE(s, nullptr) << "no sample " << name;
    if (s == nullptr) return NAN;
    if (s->value == "+Inf") return INFINITY;
    if (s->value == "-Inf") return -INFINITY;
    if (s->value == "NaN") return NAN;
    char* end = nullptr;
    const double v = std::strtod(s->value.c_str(), &end);
    EXPECT_EQ(*end, '\0') << "bad number " << s->value;
    return v;
  }
};

inline std::string unescape(const std::string& s, bool allow_quote) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    EXPECT_LT(i + 1, s.size()) << "dangling backslash in " << s;
    if (i + 1 >= s.size()) break;
    const char c = s[++i];
    if (c == '\\') {
      out += '\\';
    } else if (c == 'n') {
      out += '\n';
    } else if (c == '"' && allow_quote) {
      out += '"';
    } else {
      ADD_FAILURE() << "bad escape \\" << c << " in " << s;
    }
  }
  return out;
}

bool valid_name(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
          (i > 0 && std::isdigit(static_cast<unsigned char>(c))))) {
      return false;
    }
  }
  return true;
}

// The family a sample belongs to: histograms own name_bucket/_sum/_count.
inline std::string family_of(const Exposition& e, const std::string& sample_name) {
  if (e.type.count(sample_name)) return sample_name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string sfx = suffix;
    if (sample_name.size() > sfx.size() &&
        sample_name.compare(sample_name.size() - sfx.size(), sfx.size(), sfx) == 0) {
      const std::string base = sample_name.substr(0, sample_name.size() - sfx.size());
      auto it = e.type.find(base);
      if (it != e.type.end() && it->second == "histogram") return base;
    }
  }
  return "";
}

inline Exposition parse(const std::string& text) {
  Exposition e;
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "text must end with a newline";
  std::istringstream in(text);
  std::string line;
  std::string current_family;
  std::set<std::string> finished_families;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty()) << "empty line";
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const size_t sp = rest.find(' ');
      EXPECT_NE(sp, std::string::npos) << line;
      const std::string name = rest.substr(0, sp);
      EXPECT_TRUE(valid_name(name)) << line;
      EXPECT_EQ(e.help.count(name), 0u) << "HELP twice: " << line;
      e.help[name] = unescape(rest.substr(sp + 1), /*allow_quote=*/false);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type, extra;
      fields >> name >> type;
      EXPECT_FALSE(fields >> extra) << line;
      EXPECT_TRUE(valid_name(name)) << line;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_EQ(e.type.count(name), 0u) << "TYPE twice: " << line;
      EXPECT_EQ(e.help.count(name), 1u) << "HELP must precede TYPE: " << line;
      e.type[name] = type;
      e.family_order.push_back(name);
      continue;
    }
    EXPECT_NE(line[0], '#') << "unexpected comment " << line;
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    EXPECT_TRUE(valid_name(s.name)) << line;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        EXPECT_NE(eq, std::string::npos) << line;
        if (eq == std::string::npos) return e;
        const std::string label = line.substr(i, eq - i);
        EXPECT_TRUE(valid_name(label)) << line;
        EXPECT_EQ(line[eq + 1], '"') << line;
        size_t j = eq + 2;
        std::string raw;
        while (j < line.size() && line[j] != '"') {
          if (line[j] == '\\' && j + 1 < line.size()) raw += line[j++];
          raw += line[j++];
        }
        EXPECT_LT(j, line.size()) << "unterminated label value: " << line;
        EXPECT_EQ(s.labels.count(label), 0u) << line;
        s.labels[label] = unescape(raw, /*allow_quote=*/true);
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      EXPECT_LT(i, line.size()) << line;
      ++i;  // '}'
    }
    EXPECT_LT(i, line.size()) << line;
    EXPECT_EQ(line[i], ' ') << line;
    s.value = line.substr(i + 1);
    EXPECT_EQ(s.value.find(' '), std::string::npos) << "no timestamps expected: " << line;
    // Every sample belongs to a declared family, and a family's samples are contiguous.
    const std::string family = family_of(e, s.name);
    EXPECT_FALSE(family.empty()) << "sample without TYPE: " << line;
    if (family != current_family) {
      EXPECT_EQ(finished_families.count(family), 0u) << "family split: " << line;
      if (!current_family.empty()) finished_families.insert(current_family);
      current_family = family;
    }
    e.samples.push_back(std::move(s));
  }
  return e;
}

}  // namespace flamingo::metrics_testing
