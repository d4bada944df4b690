#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings.h"
#include "mailretry/reply/reply.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {

void RegisterReply(py::module_& m) {
  py::class_<Reply>(m, "Reply", R"doc(
What one delivery attempt produced: an SMTP reply (basic code, RFC 3463
enhanced code, text) or a transport outcome without a reply.
)doc")
      .def_property_readonly(
          "transport", [](const Reply& r) { return std::string(TransportName(r.transport)); },
          "'reply' for an SMTP reply, else e.g. 'connection_refused'.")
      .def_readonly("code", &Reply::code, "Basic reply code (200..599); 0 for transport outcomes.")
      .def_property_readonly(
          "enhanced",
          [](const Reply& r) -> std::optional<std::string> {
            if (!r.enhanced) return std::nullopt;
            return r.enhanced->ToString();
          },
          "Enhanced status code such as '4.7.28', or None.")
      .def_readonly("text", &Reply::text, "Reply text; continuation lines joined by newlines.")
      .def_property_readonly("transient", &Reply::transient,
                             "True for 4yz replies and transport outcomes.")
      .def_property_readonly("success", &Reply::success, "True for 2yz replies.")
      .def("__str__", &Reply::ToString)
      .def("__repr__", [](const Reply& r) { return "<Reply " + r.ToString() + ">"; })
      .def("__eq__", [](const Reply& a, const Reply& b) {
        return a.transport == b.transport && a.code == b.code && a.enhanced == b.enhanced &&
               a.text == b.text;
      });

  m.def(
      "parse_reply", [](std::string_view raw) { return ValueOrThrow(ParseReply(raw)); },
      py::arg("raw"),
      R"doc(Parse a reply as a server sends it (one or several lines, CRLF or LF).

Raises InvalidInputError (a ValueError) for empty input, a missing or
out-of-range code, an embedded NUL, invalid UTF-8, absurd length, or an
enhanced code whose class differs from the basic code's.)doc");

  m.def(
      "parse_reply_lenient",
      [](std::string_view raw) { return ValueOrThrow(ParseReplyLenient(raw)); }, py::arg("raw"),
      R"doc(Like parse_reply, but also accepts log/bounce text without a basic code
("5.1.1 User unknown", "BL000101 ..."); such replies have code 0.)doc");

  m.def(
      "transport_reply",
      [](std::string_view kind, std::string_view detail) {
        return TransportReply(ValueOrThrow(ParseTransport(kind)), detail);
      },
      py::arg("kind"), py::arg("detail") = "",
      R"doc(A Reply for an attempt that ended without an SMTP reply.

kind: 'connection_refused', 'connect_timeout', 'tls_failure',
'connection_dropped' or 'dns_failure'.)doc");
}

}  // namespace mailretry::python
