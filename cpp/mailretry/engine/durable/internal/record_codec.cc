// File: engine/durable/internal/record_codec.cc
#include "mailretry/engine/durable/internal/record_codec.h"

#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace mailretry::internal {
namespace {

std::string DescribeOutcome(uint8_t o, bool decision) {
  if (decision && o < 0x80) return std::string(DecisionActionName(static_cast<DecisionAction>(o)));
  const int code = decision ? (o & 0x7f) : o;
  return code == 0 ? "OK" : absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

absl::Status Mismatch(std::string_view what, const std::string& got, const std::string& want) {
  return absl::DataLossError(absl::StrCat(std::string(what), " replayed as ", got,
                                          ", journal says ", want,
                                          ": the journal does not belong to this snapshot"));
}

}  // namespace

absl::Status CheckOutcome(RecordReader& r, std::string_view what, const absl::Status& got) {
  const uint8_t want = r.U8();
  if (!r.ok() || StatusOutcome(got) == want) return absl::OkStatus();
  return Mismatch(what, DescribeOutcome(StatusOutcome(got), false), DescribeOutcome(want, false));
}

absl::Status CheckOutcome(RecordReader& r, std::string_view what,
                          const absl::StatusOr<std::vector<Lease>>& got) {
  if (absl::Status s = CheckOutcome(r, what, got.status()); !s.ok()) return s;
  const uint64_t count = r.U64();
  const uint64_t hash = r.U64();
  if (!r.ok() || !got.ok() || (got->size() == count && LeaseHash(*got) == hash))
    return absl::OkStatus();
  return Mismatch(what, absl::StrCat(got->size(), " leases"),
                  absl::StrCat(count, " leases", got->size() == count ? " of other messages" : ""));
}

absl::Status CheckOutcome(RecordReader& r, std::string_view what,
                          const absl::StatusOr<Decision>& got) {
  const uint8_t want = r.U8();
  if (!r.ok() || DecisionOutcome(got) == want) return absl::OkStatus();
  return Mismatch(what, DescribeOutcome(DecisionOutcome(got), true), DescribeOutcome(want, true));
}

absl::Status CheckOutcome(RecordReader& r, std::string_view what, const Decisions& got) {
  for (size_t i = 0; i < got.size(); ++i) {
    const uint8_t want = r.U8();
    if (!r.ok()) return absl::OkStatus();  // the caller reports the undecodable payload
    if (DecisionOutcome(got[i]) != want) {
      return Mismatch(absl::StrCat(std::string(what), " entry ", i),
                      DescribeOutcome(DecisionOutcome(got[i]), true), DescribeOutcome(want, true));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOutcome(RecordReader& r, std::string_view what, const std::vector<Event>& got) {
  const uint64_t want = r.U64();
  if (!r.ok() || got.size() == want) return absl::OkStatus();
  return Mismatch(what, absl::StrCat(got.size(), " events"), absl::StrCat(want, " events"));
}

}  // namespace mailretry::internal
