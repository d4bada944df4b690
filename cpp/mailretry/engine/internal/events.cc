// File: engine/internal/events.cc
// Events and the per-destination reply samples that give them their evidence.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailretry/engine/internal/core.h"

namespace mailretry::internal {

Event& Core::Emit(EventKind kind, int64_t t, const DestState& d) {
  if (m_.events.size() >= m_.config.max_buffered_events) {
    m_.events.pop_front();
    ++m_.events_dropped;
  }
  m_.last_event_ms = std::max(m_.last_event_ms, t);
  Event& e = m_.events.emplace_back();
  e.kind = kind;
  e.time = T(m_.last_event_ms);
  e.destination = m_.names[d.domain_id];
  e.source = m_.names[d.source_id];
  return e;
}

Event* Core::EmitMsg(EventKind kind, int64_t t, const MsgRec& r) {
  if (!m_.config.message_events) return nullptr;
  Event& e = Emit(kind, t, m_.dests[r.dest]);
  e.msg_id = r.id;
  e.attempt = r.attempts;
  return &e;
}

std::string Core::LastReplyText(const MsgRec& r) const {
  const DestState& d = m_.dests[r.dest];
  if (r.sample != 0xff) {
    const uint32_t idx = r.sample & 7u;
    if ((d.sample_gen[idx] & 31u) == (r.sample >> 3u)) return d.samples[idx];
  }
  if (r.last_code == 0) return std::string();
  if (r.last_code >= 1000) {
    return absl::StrCat("<", ToAbsl(TransportName(static_cast<Transport>(r.last_code - 1000))),
                        ">");
  }
  std::optional<EnhancedCode> e = UnpackEnhanced(r.last_enhanced);
  return e ? absl::StrCat(r.last_code, " ", e->ToString()) : absl::StrCat(r.last_code);
}

uint8_t Core::AddSample(DestState& d, const std::string& text) {
  for (uint32_t i = 0; i < d.sample_count; ++i) {
    if (d.samples[i] == text) return static_cast<uint8_t>(((d.sample_gen[i] & 31u) << 3) | i);
  }
  const uint32_t i = d.sample_next;
  d.samples[i] = text;
  ++d.sample_gen[i];
  d.sample_next = (i + 1) % internal::kSampleRing;
  d.sample_count = std::min<uint32_t>(d.sample_count + 1, internal::kSampleRing);
  return static_cast<uint8_t>(((d.sample_gen[i] & 31u) << 3) | i);
}

void Core::RecordReply(MsgRec& r, DestState& d, const Reply& reply, const Classification& c,
                       const std::string& text) {
  r.last_code = reply.transport == Transport::kReply
                    ? static_cast<uint16_t>(reply.code)
                    : static_cast<uint16_t>(1000 + static_cast<int>(reply.transport));
  r.last_enhanced = PackEnhanced(reply.enhanced);
  r.last_category = static_cast<uint8_t>(c.category);
  r.sample = AddSample(d, text);
}

std::vector<CategoryCount> Core::DominantCategories(const DestState& d, size_t max) const {
  std::vector<CategoryCount> out;
  for (int i = 0; i < kNumCategories; ++i) {
    if (d.cat_counts[i] > 0) out.push_back({static_cast<Category>(i), d.cat_counts[i]});
  }
  std::stable_sort(out.begin(), out.end(), [](const CategoryCount& a, const CategoryCount& b) {
    return a.count > b.count;
  });
  if (out.size() > max) out.resize(max);
  return out;
}

void Core::FillEvidence(Event& e, const DestState& d) {
  DestinationEventInfo& info = m_.events.NewInfo();
  e.destination_info = &info;
  info.categories = DominantCategories(d, 3);
  for (uint32_t k = 0; k < d.sample_count; ++k) {
    // Most recent first.
    const uint32_t i = (d.sample_next + internal::kSampleRing - 1 - k) % internal::kSampleRing;
    info.samples.push_back(d.samples[i]);
  }
  for (const CategoryCount& cc : info.categories) {
    for (std::string& step : RemediationSteps(cc.category)) {
      if (std::find(info.remediation.begin(), info.remediation.end(), step) ==
          info.remediation.end()) {
        info.remediation.push_back(std::move(step));
      }
    }
  }
  if (info.remediation.empty()) info.remediation = RemediationSteps(Category::kUnknownTransient);
}

}  // namespace mailretry::internal
