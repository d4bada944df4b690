// Tests of the classifier's layers, one table per layer, made of replies
// written for these tests (not corpus lines): each checks that the layer
// decides a wording it was not written from, and that the rule name says
// which layer decided.
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/reply/reply.h"

namespace mailretry {
namespace {

struct Case {
  std::string_view reply;
  Category category;
  std::string_view layer;  // prefix of the deciding rule's name
};

void ExpectAll(const std::vector<Case>& cases) {
  absl::StatusOr<Classifier> c = Classifier::Create();
  ASSERT_TRUE(c.ok()) << c.status();
  for (const Case& t : cases) {
    absl::StatusOr<Classification> k = c->ClassifyText(t.reply);
    ASSERT_TRUE(k.ok()) << t.reply << ": " << k.status();
    EXPECT_EQ(CategoryName(k->category), CategoryName(t.category))
        << t.reply << "\n  decided by " << k->rule;
    EXPECT_TRUE(k->rule.starts_with(t.layer))
        << t.reply << "\n  decided by " << k->rule << ", expected layer " << t.layer;
  }
}

using C = Category;

TEST(Layer1UserRules, BeatEveryBuiltInLayer) {
  absl::StatusOr<Classifier> c = Classifier::Create({UserRule{
      .name = "our-gateway",
      .text_regex = R"(quota\s+gate\s+\d+)",
      .code_pattern = "4xx",
      .category = C::kServerBusyCapacity,
      .action = Action::kRetry,
  }});
  ASSERT_TRUE(c.ok());
  // Built-in phrase layers would say mailbox_full ("quota", "exceeded").
  absl::StatusOr<Classification> k =
      c->ClassifyText("452 4.2.2 quota gate 7 exceeded, mailbox over quota");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->rule, "user:our-gateway");
  EXPECT_EQ(k->category, C::kServerBusyCapacity);
}

TEST(Layer2Providers, StockWordingsOfProvidersAndMtas) {
  ExpectAll({
      // Postfix anvil, message rate per client.
      {"450 4.7.1 Error: too much mail from 203.0.113.9", C::kRateLimit, "default:mta/"},
      {"450 4.7.1 <mx2.example.net>: Error: too much mail from [2001:db8:5::1]", C::kRateLimit,
       "default:mta/"},
      // Postfix / postscreen / provider connection caps.
      {"421 4.7.0 mx.example.org Error: too many connections from 198.51.100.4",
       C::kTooManyConnections, "default:mta/"},
      {"421-4.7.0 Too many concurrent connections from your address, back off\r\n421 4.7.0 and "
       "retry",
       C::kTooManyConnections, "default:mta/"},
      // Greylisting daemons and gateways.
      {"450 4.7.1 <a@b.example>: Recipient address rejected: 192.0.2.8 is not yet authorized to "
       "deliver mail from <x@y.example> to <a@b.example>. Please try later.",
       C::kGreylisting, "default:mta/"},
      {"451 Internal resource temporarily unavailable - https://gw.example.com/help#451",
       C::kGreylisting, "default:mta/"},
      {"451 4.7.1 Delayed by greylisting: please come back in 00:04:59", C::kGreylisting,
       "default:"},
      // Exchange NDR names.
      {"550 5.1.10 RESOLVER.ADR.RecipientNotFound; recipient not found by SMTP address lookup",
       C::kMailboxUnknown, "default:mta/"},
      {"552 5.2.2 STOREDRV.Deliver: QuotaExceededException for the mailbox", C::kMailboxFull,
       "default:mta/"},
      // Gmail's connection cap, refused at EHLO.
      {"421-4.7.0 Try again later, closing connection. (EHLO)\r\n421 4.7.0 See our sender "
       "guidelines. 2a00:1450::1 - gsmtp",
       C::kTooManyConnections, "default:provider/"},
      {"432 4.3.2 STOREDRV.Deliver; mailbox database thread limit exceeded", C::kRateLimit,
       "default:mta/"},
      {"550 Envelope blocked - policy entry for this sender", C::kPolicyContentSpam,
       "default:mta/"},
      // Provider markers.
      {"421 4.7.0 [TSS04] Deferred: our systems saw unusual traffic from 192.0.2.1",
       C::kReputationThrottle, "default:provider/"},
      // The same marker with a stated PTR reason is the sender's PTR fault.
      {"421 4.7.0 [TSS04] Your server 192.0.2.7 was deferred: no usable reverse DNS for it",
       C::kPtrRdns, "default:"},
      {"550 OU-002 mail from 192.0.2.5 refused, see postmaster pages", C::kReputationBlock,
       "default:provider/"},
  });
}

TEST(Layer3PhraseFamilies, MailboxGoneInOtherWords) {
  ExpectAll({
      {"550 5.1.1 <jo@example.com>: this mailbox could not be found on our servers",
       C::kMailboxUnknown, "default:"},
      {"550 Recipient <jo@example.com> is not known here", C::kMailboxUnknown, "default:words/"},
      {"550 The address you wrote to isn't valid on this system", C::kMailboxUnknown,
       "default:words/"},
      {"550 sorry, we could not find an account for that recipient", C::kMailboxUnknown,
       "default:words/"},
      {"554 delivery failed: no account registered under this e-mail name - nonexistent",
       C::kMailboxUnknown, "default:"},
      {"550 Addressee is not recognised at this site", C::kMailboxUnknown, "default:words/"},
  });
}

TEST(Layer3PhraseFamilies, MailboxDisabledInOtherWords) {
  ExpectAll({
      {"550 5.2.1 The account of this user has been deactivated by the owner", C::kMailboxDisabled,
       "default:"},
      {"550 recipient mailbox is locked by the administrator", C::kMailboxDisabled, "default:"},
      {"554 That email account was closed and no longer receives messages", C::kMailboxDisabled,
       "default:"},
      {"550 User account is dormant; messages are not accepted", C::kMailboxDisabled,
       "default:words/"},
  });
}

TEST(Layer3PhraseFamilies, StorageAndQuotaInOtherWords) {
  ExpectAll({
      {"452 4.2.2 The inbox of the recipient has no space left", C::kMailboxFull, "default:"},
      {"552 Requested mail action aborted: recipient storage capacity reached", C::kMailboxFull,
       "default:words/"},
      {"450 mail store for this user is too small to take your message, disk exceeded",
       C::kMailboxFull, "default:words/"},
  });
}

TEST(Layer3PhraseFamilies, VolumeAndConnectionsInOtherWords) {
  ExpectAll({
      {"451 4.7.1 You are sending messages too fast; slow down and retry", C::kRateLimit,
       "default:"},
      {"421 Excessive volume of mail from your network, deferring", C::kRateLimit, "default:"},
      {"452 Hourly maximum of messages from your account exceeded", C::kRateLimit, "default:"},
      {"421 Maximum simultaneous sessions for your host reached", C::kTooManyConnections,
       "default:words/"},
      {"421 4.3.2 Session limit exceeded: too many parallel connections", C::kTooManyConnections,
       "default:"},
  });
}

TEST(Layer3PhraseFamilies, ClientAuthenticationFailures) {
  ExpectAll({
      {"535 5.7.8 Username and Password not accepted", C::kRelayDenied, "default:"},
      {"535 Authentication credentials invalid", C::kRelayDenied, "default:"},
      {"530 5.7.0 Authentication needed before sending", C::kRelayDenied, "default:"},
      {"550 5.7.1 Client must log in first: authentication failed", C::kRelayDenied, "default:"},
  });
}

TEST(Layer3PhraseFamilies, SpecificEvidenceBeatsRecipientRejected) {
  ExpectAll({
      // The reason names DMARC / SPF: the authentication cause wins.
      {"550 5.7.1 Recipient address rejected: DMARC policy of the sending domain says reject",
       C::kAuthSpfDkimDmarc, "default:phrase/"},
      {"550 5.7.23 <a@b.example>: Recipient address rejected: SPF check did not pass",
       C::kAuthSpfDkimDmarc, "default:phrase/"},
      // The reason names the destination system.
      {"550 5.1.2 <a@nowhere.example>: Recipient address rejected: Domain not found",
       C::kDomainUnknown, "default:phrase/"},
      // An authentication enhanced code beats the generic phrase.
      {"550 5.7.26 Recipient address rejected", C::kAuthSpfDkimDmarc, "default:enhanced/"},
      {"550 5.7.25 Recipient address rejected", C::kPtrRdns, "default:enhanced/"},
      // A URL list in the content is not the sending IP's listing.
      {"554 5.7.1 Message rejected: a URL in the body is listed on SURBL", C::kPolicyContentSpam,
       "default:phrase/url-blocklist"},
      {"554 5.7.1 Service unavailable; client host 192.0.2.1 blocked using zen.spamhaus.org",
       C::kDnsblListed, "default:phrase/"},
  });
}

TEST(Layer3International, CommonStockWordings) {
  ExpectAll({
      {"550 5.1.1 Benutzer unbekannt", C::kMailboxUnknown, "default:intl/"},
      {"552 Postfach ist voll", C::kMailboxFull, "default:intl/"},
      {"550 5.1.1 Destinataire inconnu", C::kMailboxUnknown, "default:intl/"},
      {"452 Boîte aux lettres pleine", C::kMailboxFull, "default:intl/"},
      {"550 Usuario desconocido en este servidor", C::kMailboxUnknown, "default:intl/"},
      {"452 Buzón lleno", C::kMailboxFull, "default:intl/"},
      {"550 Conta desativada", C::kMailboxDisabled, "default:intl/"},
      {"550 Usuário desconhecido", C::kMailboxUnknown, "default:intl/"},
      {"550 Пользователь не найден", C::kMailboxUnknown, "default:intl/"},
      {"452 Почтовый ящик переполнен", C::kMailboxFull, "default:intl/"},
      {"550 收件人不存在", C::kMailboxUnknown, "default:intl/"},
      {"452 邮箱已满", C::kMailboxFull, "default:intl/"},
      {"550 宛先のメールアドレスは存在しません", C::kMailboxUnknown, "default:intl/"},
      {"421 Zu viele Verbindungen von Ihrer IP", C::kTooManyConnections, "default:intl/"},
      {"421 Trop de connexions, réessayez plus tard", C::kTooManyConnections, "default:"},
      // Word order and words in between.
      {"452 Das Postfach des Empfängers ist leider voll", C::kMailboxFull, "default:intl/"},
      {"452 La boîte aux lettres de ce destinataire est pleine", C::kMailboxFull, "default:intl/"},
      {"552 El buzón del destinatario está lleno", C::kMailboxFull, "default:intl/"},
      {"550 O endereço de destino é desconhecido", C::kMailboxUnknown, "default:intl/"},
      {"550 Dieses Konto wurde gesperrt", C::kMailboxDisabled, "default:intl/"},
      {"550 La cuenta del destinatario está desactivada", C::kMailboxDisabled, "default:intl/"},
      {"550 该邮箱账户已被冻结", C::kMailboxDisabled, "default:intl/"},
  });
}

TEST(Layer4EnhancedCodes, DecideWhenTheTextIsSilentOrGeneric) {
  ExpectAll({
      {"550 5.1.1 Rejected", C::kMailboxUnknown, "default:enhanced/"},
      {"552 5.2.2 Requested action not taken", C::kMailboxFull, "default:enhanced/"},
      {"550 5.2.1 Requested action not taken", C::kMailboxDisabled, "default:enhanced/"},
      {"554 5.3.4 Requested action not taken", C::kMessageTooLarge, "default:enhanced/"},
      {"550 5.7.26 Requested action not taken", C::kAuthSpfDkimDmarc, "default:enhanced/"},
      {"421 4.7.28 Requested action not taken", C::kRateLimit, "default:enhanced/"},
      {"550 5.1.10 Requested action not taken", C::kMailboxUnknown, "default:enhanced/"},
      // A specific detail beats a generic "try again later".
      {"452 4.2.2 Try again later", C::kMailboxFull, "default:enhanced/"},
      // The subject, when the detail is unregistered.
      {"550 5.7.640 Request refused", C::kReputationBlock, "default:provider/"},
      {"550 5.7.777 Request refused", C::kPolicyContentSpam, "default:enhanced/"},
      {"550 5.1.99 Request refused", C::kMailboxUnknown, "default:enhanced/"},
      {"553 5.5.4 Request refused", C::kUnknownPermanent, "default:enhanced/"},
  });
}

TEST(Layer5BasicCodes, DecideWhenNothingElseDoes) {
  ExpectAll({
      {"422 Requested action not taken", C::kMailboxFull, "default:code/"},
      {"552 Requested action not taken", C::kMailboxFull, "default:code/"},
      {"535 Nope", C::kRelayDenied, "default:code/"},
      {"530 Nope", C::kRelayDenied, "default:code/"},
      {"521 Nope", C::kDomainUnknown, "default:code/"},
      {"451 Nope", C::kUnknownTransient, "default:code/"},
      {"554 Nope", C::kUnknownPermanent, "default:code/"},
  });
}

TEST(Layer5BasicCodes, AuthCodesAreRemediatedNotBounced) {
  absl::StatusOr<Classifier> c = Classifier::Create();
  ASSERT_TRUE(c.ok());
  absl::StatusOr<Classification> k = c->ClassifyText("535 5.7.8 Nope");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->action, Action::kRemediate);
  EXPECT_FALSE(k->transient);
  k = c->ClassifyText("422 Nope");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->action, Action::kRetry);
  EXPECT_TRUE(k->transient);
}

// More wordings per cause, in the words servers tend to use, none taken from
// the corpus: the broad check that the layers together generalise.
TEST(AllLayers, WordingsNotInTheCorpus) {
  ExpectAll({
      {"421 4.7.0 Rate limited, please retry later", C::kRateLimit, "default:"},
      {"450 4.7.1 Client host rejected: sending rate exceeded", C::kRateLimit, "default:"},
      {"421 Too many messages in a short time from your IP", C::kRateLimit, "default:"},
      {"451 4.7.1 Message throttled due to high volume", C::kRateLimit, "default:"},
      {"550 5.4.5 Daily user sending quota exceeded", C::kRateLimit, "default:"},
      {"450 4.2.1 This user is receiving mail at a rate that prevents more messages", C::kRateLimit,
       "default:"},
      {"421 Connection limit for your IP reached", C::kTooManyConnections, "default:"},
      {"421 4.4.5 Service temporarily unavailable: too many connections", C::kTooManyConnections,
       "default:"},
      {"421 Server too busy, try later", C::kServerBusyCapacity, "default:"},
      {"452 4.3.1 Insufficient system storage", C::kServerBusyCapacity, "default:"},
      {"421 4.3.2 System going down for maintenance", C::kMaintenanceShutdown, "default:"},
      {"554 5.7.1 Your IP has been blocked due to poor reputation", C::kReputationBlock,
       "default:"},
      {"421 4.7.0 Your IP is temporarily deferred due to user complaints", C::kReputationThrottle,
       "default:"},
      {"450 4.2.0 Greylisted, please retry in 5 minutes", C::kGreylisting, "default:"},
      {"550 5.7.1 Email rejected per DMARC policy for example.com", C::kAuthSpfDkimDmarc,
       "default:"},
      {"550 5.7.1 The message failed authentication checks: neither SPF nor DKIM passed",
       C::kAuthSpfDkimDmarc, "default:"},
      {"550 No PTR record for your IP 192.0.2.7", C::kPtrRdns, "default:"},
      {"554 5.7.1 Your IP has no reverse DNS", C::kPtrRdns, "default:"},
      {"554 5.7.1 Message rejected as spam by content filtering", C::kPolicyContentSpam,
       "default:"},
      {"550 5.7.1 Message contains a virus", C::kPolicyContentSpam, "default:"},
      {"550 5.1.2 Host or domain name not found", C::kDomainUnknown, "default:"},
      {"554 5.4.4 Unable to route: no MX for the domain", C::kDomainUnknown, "default:"},
      {"552 5.3.4 Message size exceeds fixed limit", C::kMessageTooLarge, "default:"},
      {"552 Message is larger than the 10 MB this recipient accepts", C::kMessageTooLarge,
       "default:"},
      {"554 5.7.1 <x@y.example>: Relay access denied", C::kRelayDenied, "default:"},
      {"554 Rejected: 192.0.2.1 listed at bl.spamcop.net", C::kDnsblListed, "default:"},
      {"530 5.7.0 Must issue a STARTTLS command first", C::kTlsRequired, "default:"},
      {"554 5.7.1 TLS is required for this domain", C::kTlsRequired, "default:"},
      {"550 5.1.1 Mailbox does not exist", C::kMailboxUnknown, "default:"},
      {"550 This mailbox has been disabled", C::kMailboxDisabled, "default:"},
      {"552 5.2.2 Over quota", C::kMailboxFull, "default:"},
      {"421 4.7.0 Too many connections from your IP; try again later", C::kTooManyConnections,
       "default:"},
      {"550 Sender address rejected: domain of sender has no MX", C::kAuthSpfDkimDmarc, "default:"},
      {"421 Service not available, closing transmission channel", C::kMaintenanceShutdown,
       "default:"},
      {"550 5.7.1 Message not signed with DKIM", C::kAuthSpfDkimDmarc, "default:"},
      {"550 Mailbox unavailable or access denied", C::kMailboxUnknown, "default:"},
      {"553 5.1.3 Bad recipient address syntax", C::kMailboxUnknown, "default:"},
      {"550 5.7.1 Recipient not authorized to receive from this sender", C::kPolicyContentSpam,
       "default:"},
      {"451 4.4.3 Temporary DNS failure, try again", C::kUnknownTransient, "default:"},
      {"550 5.4.6 Routing loop detected", C::kUnknownPermanent, "default:"},
      {"421 4.4.2 Connection dropped due to timeout", C::kUnknownTransient, "default:"},
      {"554 5.7.1 Access denied: IP is listed by Barracuda Reputation", C::kDnsblListed,
       "default:"},
      {"550 5.7.606 Access denied, banned sending IP", C::kReputationBlock, "default:"},
      {"550 user has moved with no forwarding address", C::kMailboxUnknown, "default:"},
      {"552 5.2.2 User has exhausted allowed storage space", C::kMailboxFull, "default:"},
      {"552 Mailbox limit exceeded for this user", C::kMailboxFull, "default:"},
      {"421 Sending too much email, slow down", C::kRateLimit, "default:"},
      {"450 You have exceeded your messaging limits", C::kRateLimit, "default:"},
      {"535 Incorrect authentication data", C::kRelayDenied, "default:"},
      {"550 5.7.1 Message from example.com failed the sender's authentication policy",
       C::kAuthSpfDkimDmarc, "default:"},
      {"550 5.7.1 Mail from your IP range is refused due to spam complaints", C::kReputationBlock,
       "default:"},
      {"550 5.7.1 Blocked: this IP address is on our deny list", C::kReputationBlock, "default:"},
      {"550 5.1.2 Bad destination system address", C::kDomainUnknown, "default:"},
      {"250 2.0.0 Ok: queued as 1A2B3C", C::kDelivered, "default:code/"},
      {"550 Administrative prohibition", C::kPolicyContentSpam, "default:generic/"},
      {"550 5.7.27 Sender address has null MX", C::kAuthSpfDkimDmarc, "default:words/"},
      {"421 4.3.0 System temporarily down for upgrade", C::kMaintenanceShutdown, "default:"},
      {"554 5.7.1 Recipient does not accept mail from this sender", C::kPolicyContentSpam,
       "default:"},
      {"450 Sender address rejected: not logged in", C::kRelayDenied, "default:"},
      {"550 [ID:77aa] mailbox <x@y.example> : does-not-exist", C::kMailboxUnknown, "default:"},
      // "Your account" is the sender's own account, not the recipient's mailbox.
      {"550 5.7.1 Your account has been disabled for sending", C::kRelayDenied, "default:"},
      // "Recipient address rejected" with an X.7 code and a reason no rule
      // knows: the receiver's policy, not a missing mailbox.
      {"550 5.7.1 <a@b.example>: Recipient address rejected: your mail looks like bulk",
       C::kPolicyContentSpam, "default:generic/"},
      {"550 5.7.1 Message rejected: this user has blocked your address", C::kPolicyContentSpam,
       "default:"},
      {"452 4.3.1 Mail system full, storage temporarily exhausted", C::kServerBusyCapacity,
       "default:enhanced/"},
      // A server's own disk is its capacity, not a recipient's quota.
      {"452 4.4.5 Insufficient disk space; try again later", C::kServerBusyCapacity,
       "default:enhanced/"},
      {"550 Rejected by header-based anti-spoofing policy", C::kAuthSpfDkimDmarc,
       "default:phrase/"},
      // A state word next to another noun is not about the sender.
      {"550 5.2.253 Sender held back after repeated invalid licence errors, throttled",
       C::kRateLimit, "default:"},
  });
}

}  // namespace
}  // namespace mailretry
