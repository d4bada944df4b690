// File: reply/reply.h
// -----------------------------------------------------------------------------
// What a sender learns from one delivery attempt: an SMTP reply as the server
// sent it (basic code, RFC 3463 enhanced code, text), or a transport outcome
// that never produced a reply (connection refused, timeout, TLS failure, ...).
//
//   absl::StatusOr<Reply> r = ParseReply("421-4.7.0 Try again later\r\n421 4.7.0 closing");
//   if (r.ok() && r->transient()) { ... }
#ifndef MAILRETRY_REPLY_REPLY_H_
#define MAILRETRY_REPLY_REPLY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailretry {

// RFC 3463 enhanced status code "class.subject.detail", e.g. 4.7.28.
struct EnhancedCode {
  uint8_t klass = 0;     // 2, 4 or 5
  uint16_t subject = 0;  // 0..999
  uint16_t detail = 0;   // 0..999

  std::string ToString() const;  // "4.7.28"
  friend bool operator==(const EnhancedCode&, const EnhancedCode&) = default;
};

// Outcomes of an attempt that ended without an SMTP reply to the transaction.
enum class Transport : uint8_t {
  kReply = 0,          // a real SMTP reply was received; see Reply::code
  kConnectionRefused,  // TCP RST on connect to every MX
  kConnectTimeout,     // no TCP connection within the connect timeout
  kTlsFailure,         // STARTTLS handshake or certificate failure
  kConnectionDropped,  // connection lost mid-transaction
  kDnsFailure,         // MX / A lookup failed (SERVFAIL, timeout)
};
inline constexpr int kNumTransports = 6;

// Stable snake_case name: "reply", "connection_refused", "connect_timeout",
// "tls_failure", "connection_dropped", "dns_failure".
std::string_view TransportName(Transport t);
// Inverse of TransportName; InvalidArgument for an unknown name.
absl::StatusOr<Transport> ParseTransport(std::string_view name);

// One attempt's result as seen by the sender.
struct Reply {
  Transport transport = Transport::kReply;
  int code = 0;                          // 200..599 for kReply; 0 otherwise
  std::optional<EnhancedCode> enhanced;  // when the server sent one
  std::string text;                      // reply text, continuation lines joined by '\n'

  // True for a 4yz reply and for every transport outcome. For code 0 (see
  // ParseReplyLenient): the enhanced class if present, else true.
  bool transient() const;
  // True for a 2yz reply.
  bool success() const { return transport == Transport::kReply && code >= 200 && code < 300; }
  // Canonical one-line rendering: "421 4.7.0 text" (line breaks in the text
  // become spaces, so ParseReply reads it back) or "<connection_refused>"
  // followed by " detail" when there is one.
  std::string ToString() const;
};

// Hard limit on the raw reply size accepted by ParseReply (RFC 5321 allows 512
// octets per line; real multi-line replies stay far below this).
inline constexpr size_t kMaxReplyBytes = 64 * 1024;

// Parses a reply as a server sends it: one line or several ("421-" continuation
// lines, CRLF or LF line ends, surrounding whitespace and blank lines ignored).
// The enhanced code is taken from the start of the first line with text
// ("550 5.1.1 ..." or "550-5.1.1 ...") and stripped from every line that
// repeats it; it needs a class of 2, 4 or 5, subject and detail of 1-3 digits,
// and a following space ("5.7.606-649" stays text). A line without a code after the first is kept
// as text, and a '-' on the last line is tolerated ("550-SPF check failed").
//
// Errors (InvalidArgument): empty input, no 3-digit code, code outside
// 200..599, longer than kMaxReplyBytes, an embedded NUL, invalid UTF-8,
// continuation lines with different codes.
//
// An enhanced class that differs from the basic code's first digit is NOT an
// error: real servers send "550 4.4.7 QUEUE.Expired" (Exchange) and
// "421 5.7.32 ..." (Gmail), and refusing them would lose the reply. The
// enhanced code is kept as sent; the basic code decides transient().
absl::StatusOr<Reply> ParseReply(std::string_view raw);

// Like ParseReply, but also accepts what logs and bounce messages often carry
// instead of a reply: text that starts with only an enhanced code
// ("5.1.1 User unknown", "4.4.316 Connection refused") or has no code at all
// ("BL000101 ... blocklist"). Such results have code 0: the enhanced class, if
// any, decides transient(), else it is transient (nothing says it is final).
// Still rejected: empty or blank input, an embedded NUL, invalid UTF-8, more
// than kMaxReplyBytes, and text that starts with a malformed 3-digit code
// ("999 ...").
absl::StatusOr<Reply> ParseReplyLenient(std::string_view raw);

// For classifying text from logs and bounce tables, which often give only the
// enhanced code ("5.1.1 User unknown", "4.7.0 Try again later"): ParseReply,
// or, when the text starts with an enhanced code and has no basic code, a
// Reply whose basic code is inferred from the enhanced class (500, 400 or 200)
// with `*basic_code_inferred` set. A reply wrapped as logs and bounces give it,
// "Diagnostic-Code: smtp; 550 ..." (RFC 3464) or Postfix's "host mx.example[ip]
// said: 550 ...", is unwrapped (its basic code is the server's, not inferred).
// Text with no code at all is refused, as by ParseReply. Engine::Report stays strict: a server
// always sends a basic code.
absl::StatusOr<Reply> ParseReplyInferringCode(std::string_view raw, bool* basic_code_inferred);

// A Reply for a transport outcome without an SMTP reply; `detail` becomes the
// text. Meant for t != kReply (kReply yields a reply with code 0).
Reply TransportReply(Transport t, std::string_view detail = {});

}  // namespace mailretry

#endif  // MAILRETRY_REPLY_REPLY_H_
