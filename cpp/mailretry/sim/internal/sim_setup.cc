// Building a run's world from the scenario: receiver profiles with their
// parsed replies, the named and Zipf-tail domains, sources, (domain, source)
// pairs with their ground truth, and every message's arrival, domain, source
// and recipient. See internal/simulation.h.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "mailretry/policy/retry_policy.h"
#include "mailretry/reply/reply.h"
#include "mailretry/sim/internal/sim_receiver.h"
#include "mailretry/sim/internal/sim_sender.h"
#include "mailretry/sim/internal/sim_workload.h"
#include "mailretry/sim/internal/simulation.h"
#include "mailretry/sim/sim.h"

namespace mailretry::sim::internal {
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

uint32_t Simulation::ProfileIndex(const std::string& name) {
  auto it = profile_ids_.find(name);
  if (it != profile_ids_.end()) return it->second;
  ReceiverProfile p;
  bool found = false;
  for (const ReceiverProfile& custom : s_.profiles) {
    if (custom.name == name) {
      p = custom;
      found = true;
      break;
    }
  }
  if (!found) p = *BuiltinProfile(name);  // ValidateScenario checked the name
  std::vector<Reply> parsed;
  parsed.reserve(kNumReplyKinds);
  for (int k = 0; k < kNumReplyKinds; ++k) {
    switch (static_cast<ReplyKind>(k)) {
      case ReplyKind::kConnectionRefused:
        parsed.push_back(TransportReply(Transport::kConnectionRefused, p.replies[k]));
        break;
      case ReplyKind::kConnectTimeout:
        parsed.push_back(TransportReply(Transport::kConnectTimeout, p.replies[k]));
        break;
      case ReplyKind::kDroppedMidData:
        parsed.push_back(TransportReply(Transport::kConnectionDropped, p.replies[k]));
        break;
      default:
        parsed.push_back(*ParseReply(p.replies[k]));
    }
  }
  const uint32_t id = static_cast<uint32_t>(profiles_.size());
  profile_ms_.emplace_back(p);
  profiles_.push_back(std::move(p));
  replies_.push_back(std::move(parsed));
  profile_ids_.emplace(name, id);
  return id;
}

absl::Status Simulation::Setup() {
  const uint64_t n = s_.messages;
  SplitMix64 rng(s_.seed ^ 0x243f6a8885a308d3ULL);

  // Domains: the named ones, then the Zipf tail.
  for (const NamedDestination& d : s_.named) {
    domain_ids_.emplace(d.domain, static_cast<uint32_t>(r_.domains.size()));
    r_.domains.push_back(d.domain);
    domain_profile_.push_back(ProfileIndex(d.profile));
  }
  const size_t named = r_.domains.size();
  std::vector<double> tail_weights;
  std::vector<double> tail_profile_weights;
  for (const auto& entry : s_.tail_profiles) tail_profile_weights.push_back(entry.second);
  if (s_.tail_domains > 0) {
    Cdf tail_profiles(tail_profile_weights);
    tail_weights.reserve(s_.tail_domains);
    for (uint32_t k = 1; k <= s_.tail_domains; ++k) {
      std::string name = absl::StrCat("d", k, ".example.net");
      if (domain_ids_.contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("destination \"", name, "\" clashes with the tail's names"));
      }
      domain_ids_.emplace(name, static_cast<uint32_t>(r_.domains.size()));
      r_.domains.push_back(std::move(name));
      const std::string& profile = s_.tail_profiles[tail_profiles.Pick(rng.Uniform())].first;
      domain_profile_.push_back(ProfileIndex(profile));
      tail_weights.push_back(1.0 / std::pow(static_cast<double>(k), s_.zipf_exponent));
    }
  }
  const size_t domains = r_.domains.size();
  for (size_t d = 0; d < domains; ++d)
    r_.domain_profile.push_back(profiles_[domain_profile_[d]].name);
  r_.domain_messages.assign(domains, 0);

  // Sources and (domain, source) pairs with their ground truth.
  std::vector<double> source_weights;
  for (const Source& src : s_.sources) {
    source_ids_.emplace(src.name, static_cast<uint32_t>(r_.sources.size()));
    r_.sources.push_back(src.name);
    source_weights.push_back(src.weight);
  }
  nsources_ = static_cast<uint32_t>(s_.sources.size());
  const size_t npairs = domains * nsources_;
  pairs_.assign(npairs, PairState{});
  r_.pair_structural.assign(npairs, false);
  r_.pair_structural_s.assign(npairs, kNaN);
  r_.pair_warning_s.assign(npairs, kNaN);
  r_.pair_messages.assign(npairs, 0);
  for (size_t d = 0; d < domains; ++d) {
    const ReceiverProfile& p = profiles_[domain_profile_[d]];
    for (size_t i = 0; i < nsources_; ++i) {
      pairs_[d * nsources_ + i].reputation = s_.sources[i].reputation;
      r_.pair_structural[d * nsources_ + i] =
          PtrFails(p, s_.sources[i]) || AuthFails(p, s_.sources[i]);
    }
  }

  // Messages: arrival time, domain, source, recipient.
  arrival_ms_ = Arrivals(s_, rng);
  double named_total = 0;
  std::vector<double> named_weights;
  for (const NamedDestination& d : s_.named) {
    named_total += d.share;
    named_weights.push_back(d.share);
  }
  std::unique_ptr<Cdf> named_cdf = named_total > 0 ? std::make_unique<Cdf>(named_weights) : nullptr;
  std::unique_ptr<Cdf> tail_cdf =
      tail_weights.empty() ? nullptr : std::make_unique<Cdf>(tail_weights);
  Cdf source_cdf(source_weights);
  r_.msg_domain.resize(n);
  r_.msg_source.resize(n);
  r_.msg_submit_s.assign(n, kNaN);
  r_.msg_end_s.assign(n, kNaN);
  msgs_.assign(n, Msg{});
  for (uint64_t i = 0; i < n; ++i) {
    const double u = rng.Uniform();
    uint32_t d;
    if (named_cdf != nullptr && (u < named_total || tail_cdf == nullptr)) {
      d = named_cdf->Pick(std::min(u / named_total, 0.999999999));
    } else {
      d = static_cast<uint32_t>(named) + tail_cdf->Pick(rng.Uniform());
    }
    r_.msg_domain[i] = d;
    r_.msg_source[i] = static_cast<uint16_t>(source_cdf.Pick(rng.Uniform()));
    msgs_[i].domain = d;
    msgs_[i].source = r_.msg_source[i];
    ++r_.domain_messages[d];
    ++r_.pair_messages[d * nsources_ + r_.msg_source[i]];
  }
  for (int k = 0; k < kNumLocalDeferrals; ++k) {
    local_replies_.push_back(*ParseReply(LocalDeferralText(static_cast<LocalDeferral>(k))));
  }
  return absl::OkStatus();
}

}  // namespace mailretry::sim::internal
