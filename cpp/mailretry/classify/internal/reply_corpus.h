// File: classify/internal/reply_corpus.h
// -----------------------------------------------------------------------------
// Reads the labelled reply corpus (JSON lines with simple string fields) for
// the classifier tests and benchmarks. Not a JSON parser: it finds "key": "..."
// and decodes the string's escapes (\" \\ \/ \n \t \uXXXX with surrogates).
// Header-only so tests and benchmarks share it without entering the library.
//
// It also holds the corpus's one tune/validation split (SplitOfSource), used
// by the C++ tests and, through the bindings, by `mailretry evaluate --split`:
// rules are written against the tune split only, and the validation split
// measures how they do on sources whose wording was never looked at.
#ifndef MAILRETRY_CLASSIFY_INTERNAL_REPLY_CORPUS_H_
#define MAILRETRY_CLASSIFY_INTERNAL_REPLY_CORPUS_H_

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mailretry/reply/reply.h"

namespace mailretry::internal {

inline void AppendCodepoint(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

inline std::optional<uint32_t> Hex4(std::string_view s, size_t at) {
  if (at + 4 > s.size()) return std::nullopt;
  uint32_t v = 0;
  for (size_t i = at; i < at + 4; ++i) {
    const char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= static_cast<uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= static_cast<uint32_t>(c - 'A' + 10);
    else
      return std::nullopt;
  }
  return v;
}

// The decoded string value of "key" in one JSON object line, if present.
inline std::optional<std::string> JsonStringField(std::string_view line, std::string_view key) {
  std::string quoted;
  quoted.reserve(key.size() + 2);
  quoted.push_back('"');
  quoted.append(key);
  quoted.push_back('"');
  size_t pos = 0;
  while ((pos = line.find(quoted, pos)) != std::string_view::npos) {
    size_t i = pos + quoted.size();
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size() || line[i] != ':') {
      pos = i;
      continue;  // the key text appeared inside some value
    }
    ++i;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i >= line.size() || line[i] != '"') return std::nullopt;
    ++i;
    std::string out;
    while (i < line.size() && line[i] != '"') {
      if (line[i] != '\\') {
        out.push_back(line[i++]);
        continue;
      }
      if (++i >= line.size()) return std::nullopt;
      const char e = line[i++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          std::optional<uint32_t> cp = Hex4(line, i);
          if (!cp) return std::nullopt;
          i += 4;
          if (*cp >= 0xD800 && *cp <= 0xDBFF && i + 6 <= line.size() && line[i] == '\\' &&
              line[i + 1] == 'u') {
            std::optional<uint32_t> low = Hex4(line, i + 2);
            if (low && *low >= 0xDC00 && *low <= 0xDFFF) {
              cp = 0x10000 + ((*cp - 0xD800) << 10) + (*low - 0xDC00);
              i += 6;
            }
          }
          AppendCodepoint(*cp, &out);
          break;
        }
        default:
          return std::nullopt;
      }
    }
    if (i >= line.size()) return std::nullopt;
    return out;
  }
  return std::nullopt;
}

// Which half of the corpus a row belongs to. The split is by the row's
// `source` (the page or file it was collected from), not by row: replies from
// one source share wording, so a row-level split would leak that wording into
// the validation half and measure fit instead of generalisation.
enum class CorpusSplit : uint8_t { kTune, kValidation };

// Percent of sources (by hash) in the validation split: about 28 % of the
// sources, which is about a quarter of the rows.
inline constexpr uint64_t kValidationPercent = 28;

// FNV-1a (64 bit) of the source's UTF-8 bytes: stable across platforms,
// compilers and Python (the bindings expose it), unlike std::hash.
inline uint64_t SourceHash(std::string_view source) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : source) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

inline CorpusSplit SplitOfSource(std::string_view source) {
  return SourceHash(source) % 100 < kValidationPercent ? CorpusSplit::kValidation
                                                       : CorpusSplit::kTune;
}

inline std::string_view CorpusSplitName(CorpusSplit s) {
  return s == CorpusSplit::kValidation ? "validation" : "tune";
}

struct CorpusEntry {
  std::string reply;
  std::string source;
  std::string provider;
  std::string category;
  std::string action;
  std::string confidence;
};

// Loads every line that has a "reply" field. Empty on a missing file.
inline std::vector<CorpusEntry> LoadCorpus(const std::string& path) {
  std::vector<CorpusEntry> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::optional<std::string> reply = JsonStringField(line, "reply");
    if (!reply) continue;
    CorpusEntry e;
    e.reply = std::move(*reply);
    e.source = JsonStringField(line, "source").value_or("");
    e.provider = JsonStringField(line, "provider").value_or("");
    e.category = JsonStringField(line, "category").value_or("");
    e.action = JsonStringField(line, "action").value_or("");
    e.confidence = JsonStringField(line, "confidence").value_or("");
    out.push_back(std::move(e));
  }
  return out;
}

// The rows of `corpus` in `split`.
inline std::vector<CorpusEntry> CorpusRowsIn(const std::vector<CorpusEntry>& corpus,
                                             CorpusSplit split) {
  std::vector<CorpusEntry> out;
  for (const CorpusEntry& e : corpus) {
    if (SplitOfSource(e.source) == split) out.push_back(e);
  }
  return out;
}

// The corpus also holds published explanations without a basic code
// ("5.7.606-649 Access denied, banned sending IP", "BL000001 ..."). ParseReply
// rejects those, as a server never sends them; build a Reply with code 0 and
// the leading enhanced code (ranges like 606-649 read as their start).
inline Reply CorpusReply(std::string_view raw) {
  absl::StatusOr<Reply> parsed = ParseReply(raw);
  if (parsed.ok()) return *std::move(parsed);
  Reply r;
  size_t i = 0;
  while (i < raw.size() && raw[i] == ' ') ++i;
  uint32_t parts[3] = {0, 0, 0};
  int got = 0;
  size_t j = i;
  while (got < 3 && j < raw.size()) {
    size_t start = j;
    uint32_t v = 0;
    while (j < raw.size() && raw[j] >= '0' && raw[j] <= '9' && j - start < 3) {
      v = v * 10 + static_cast<uint32_t>(raw[j] - '0');
      ++j;
    }
    if (j == start) break;
    parts[got++] = v;
    if (got < 3) {
      if (j >= raw.size() || raw[j] != '.') break;
      ++j;
    }
  }
  if (got == 3 && (parts[0] == 2 || parts[0] == 4 || parts[0] == 5)) {
    r.enhanced = EnhancedCode{static_cast<uint8_t>(parts[0]), static_cast<uint16_t>(parts[1]),
                              static_cast<uint16_t>(parts[2])};
    while (j < raw.size() && raw[j] != ' ') ++j;  // "-649"
    i = j;
  }
  while (i < raw.size() && raw[i] == ' ') ++i;
  r.text = std::string(raw.substr(i));
  return r;
}

}  // namespace mailretry::internal

#endif  // MAILRETRY_CLASSIFY_INTERNAL_REPLY_CORPUS_H_
