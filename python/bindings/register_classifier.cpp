#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bindings.h"
#include "mailretry/classify/classifier.h"
#include "mailretry/classify/internal/reply_corpus.h"
#include "mailretry/reply/reply.h"
#include "status.h"
#include "text_column.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

// A reply together with its classification; what mailretry.classify returns.
struct ClassifiedReply {
  Reply reply;
  Classification classification;
  std::string rule;  // owned copy: the result may outlive the Classifier
};

// What classify() accepts: a reply as sent, or text that starts with only an
// enhanced code (basic code inferred, marked); with `lenient`, also text with
// no code at all (code 0).
absl::StatusOr<Reply> ParseForClassify(std::string_view raw, bool lenient, bool* inferred) {
  absl::StatusOr<Reply> r = ParseReplyInferringCode(raw, inferred);
  if (r.ok() || !lenient) return r;
  return ParseReplyLenient(raw);
}

// Column-oriented results of classify_many, exposed to Python as numpy views.
struct ClassificationBatch {
  std::vector<int16_t> code;
  std::vector<uint32_t> enhanced;  // class*1'000'000 + subject*1'000 + detail; 0 = none
  std::vector<uint8_t> category;
  std::vector<uint8_t> action;
  std::vector<uint8_t> transient;
  std::vector<int32_t> rule;  // index into rules; -1 where the reply did not parse
  std::vector<uint8_t> ok;
  std::vector<uint8_t> inferred;   // basic code inferred from the enhanced class
  std::vector<std::string> rules;  // rule names, same order as Classifier::RuleNames()
  std::vector<std::pair<size_t, std::string>> errors;

  void Resize(size_t n) {
    code.assign(n, 0);
    enhanced.assign(n, 0);
    category.assign(n, static_cast<uint8_t>(Category::kUnknownTransient));
    action.assign(n, static_cast<uint8_t>(Action::kRetry));
    transient.assign(n, 1);
    rule.assign(n, -1);
    ok.assign(n, 0);
    inferred.assign(n, 0);
  }
};

uint32_t PackEnhanced(const std::optional<EnhancedCode>& e) {
  if (!e) return 0;
  return static_cast<uint32_t>(e->klass) * 1'000'000u + static_cast<uint32_t>(e->subject) * 1'000u +
         e->detail;
}

template <typename T>
py::array_t<T> View(std::vector<T>& v, py::handle owner) {
  return py::array_t<T>({static_cast<py::ssize_t>(v.size())}, {sizeof(T)}, v.data(), owner);
}

}  // namespace

void RegisterClassifier(py::module_& m) {
  py::tuple categories(kNumCategoriesWithDelivered);
  for (int i = 0; i < kNumCategoriesWithDelivered; ++i) {
    categories[static_cast<size_t>(i)] = std::string(CategoryName(static_cast<Category>(i)));
  }
  m.attr("CATEGORIES") = categories;
  py::tuple actions(kNumActions);
  for (int i = 0; i < kNumActions; ++i) {
    actions[static_cast<size_t>(i)] = std::string(ActionName(static_cast<Action>(i)));
  }
  m.attr("ACTIONS") = actions;

  m.def(
      "corpus_split",
      [](std::string_view source) {
        return std::string(internal::CorpusSplitName(internal::SplitOfSource(source)));
      },
      py::arg("source"),
      "'tune' or 'validation': the dev corpus split of a row with this source (the C++ "
      "tests use the same function).");

  py::class_<UserRule>(m, "UserRule", "A user classification rule (see mailretry.Classifier).")
      .def(py::init([](std::string name, std::string text, std::string enhanced, std::string code,
                       std::string destination, std::string_view category, std::string_view action,
                       std::optional<bool> transient) {
             UserRule rule;
             rule.name = std::move(name);
             rule.text_regex = std::move(text);
             rule.enhanced_pattern = std::move(enhanced);
             rule.code_pattern = std::move(code);
             rule.destination = std::move(destination);
             rule.category = ValueOrThrow(ParseCategory(category));
             rule.action = ValueOrThrow(ParseAction(action));
             rule.transient = transient;
             return rule;
           }),
           py::kw_only(), py::arg("name"), py::arg("text") = "", py::arg("enhanced") = "",
           py::arg("code") = "", py::arg("destination") = "", py::arg("category"),
           py::arg("action"), py::arg("transient") = py::none())
      .def_readonly("name", &UserRule::name)
      .def_readonly("text", &UserRule::text_regex)
      .def_readonly("enhanced", &UserRule::enhanced_pattern)
      .def_readonly("code", &UserRule::code_pattern)
      .def_readonly("destination", &UserRule::destination)
      .def_property_readonly(
          "category", [](const UserRule& r) { return std::string(CategoryName(r.category)); })
      .def_property_readonly("action",
                             [](const UserRule& r) { return std::string(ActionName(r.action)); })
      .def_readonly("transient", &UserRule::transient);

  py::class_<ClassifiedReply>(m, "ClassifiedReply",
                              "A parsed reply with the category, action and deciding rule.")
      .def_property_readonly("reply", [](const ClassifiedReply& c) { return c.reply; })
      .def_property_readonly(
          "transport",
          [](const ClassifiedReply& c) { return std::string(TransportName(c.reply.transport)); })
      .def_property_readonly("code", [](const ClassifiedReply& c) { return c.reply.code; })
      .def_property_readonly("enhanced",
                             [](const ClassifiedReply& c) -> std::optional<std::string> {
                               if (!c.reply.enhanced) return std::nullopt;
                               return c.reply.enhanced->ToString();
                             })
      .def_property_readonly("text", [](const ClassifiedReply& c) { return c.reply.text; })
      .def_property_readonly("category",
                             [](const ClassifiedReply& c) {
                               return std::string(CategoryName(c.classification.category));
                             })
      .def_property_readonly(
          "action",
          [](const ClassifiedReply& c) { return std::string(ActionName(c.classification.action)); })
      .def_property_readonly("transient",
                             [](const ClassifiedReply& c) { return c.classification.transient; })
      .def_readonly("rule", &ClassifiedReply::rule)
      .def_property_readonly(
          "basic_code_inferred",
          [](const ClassifiedReply& c) { return c.classification.basic_code_inferred; },
          "True when the text had only an enhanced code and `code` was inferred from its class.")
      .def("__repr__", [](const ClassifiedReply& c) {
        const char* kind = c.classification.transient ? " transient" : " permanent";
        return "<ClassifiedReply " + std::string(CategoryName(c.classification.category)) + "/" +
               std::string(ActionName(c.classification.action)) + kind +
               absl::StrCat(" rule=", c.rule, ": ", c.reply.ToString(), ">");
      });

  py::class_<ClassificationBatch>(m, "ClassificationBatch",
                                  "Column-oriented results of classify_many (numpy views).")
      .def("__len__", [](const ClassificationBatch& b) { return b.code.size(); })
      .def_property_readonly(
          "code",
          [](py::object self) { return View(self.cast<ClassificationBatch&>().code, self); })
      .def_property_readonly(
          "enhanced_packed",
          [](py::object self) { return View(self.cast<ClassificationBatch&>().enhanced, self); })
      .def_property_readonly(
          "category",
          [](py::object self) { return View(self.cast<ClassificationBatch&>().category, self); })
      .def_property_readonly(
          "action",
          [](py::object self) { return View(self.cast<ClassificationBatch&>().action, self); })
      .def_property_readonly(
          "transient",
          [](py::object self) {
            return View(self.cast<ClassificationBatch&>().transient, self).attr("view")("bool");
          })
      .def_property_readonly(
          "rule",
          [](py::object self) { return View(self.cast<ClassificationBatch&>().rule, self); })
      .def_property_readonly(
          "ok",
          [](py::object self) {
            return View(self.cast<ClassificationBatch&>().ok, self).attr("view")("bool");
          })
      .def_property_readonly(
          "basic_code_inferred",
          [](py::object self) {
            return View(self.cast<ClassificationBatch&>().inferred, self).attr("view")("bool");
          })
      .def_readonly("rules", &ClassificationBatch::rules)
      .def_property_readonly("errors", [](const ClassificationBatch& b) {
        py::dict out;
        for (const auto& [index, message] : b.errors) out[py::int_(index)] = message;
        return out;
      });

  py::class_<Classifier>(m, "Classifier", R"doc(
Maps replies to a category, an action and transient/permanent. User rules
(checked first, in order) take precedence over the built-in defaults.)doc")
      .def(py::init([](std::vector<UserRule> rules) {
             return ValueOrThrow(Classifier::Create(std::move(rules)));
           }),
           py::arg("rules") = std::vector<UserRule>{})
      .def(
          "classify",
          [](const Classifier& c, std::string_view raw, std::string_view destination,
             bool lenient) {
            ClassifiedReply out;
            bool inferred = false;
            out.reply = ValueOrThrow(ParseForClassify(raw, lenient, &inferred));
            out.classification = c.Classify(out.reply, destination);
            out.classification.basic_code_inferred = inferred;
            out.rule = std::string(out.classification.rule);
            return out;
          },
          py::arg("raw"), py::arg("destination") = "", py::kw_only(), py::arg("lenient") = false,
          "Parse and classify one reply text (text with only an enhanced code is accepted, "
          "basic_code_inferred). Raises InvalidInputError if it does not parse.")
      .def(
          "classify_reply",
          [](const Classifier& c, const Reply& reply, std::string_view destination) {
            ClassifiedReply out{reply, c.Classify(reply, destination), {}};
            out.rule = std::string(out.classification.rule);
            return out;
          },
          py::arg("reply"), py::arg("destination") = "", "Classify an already parsed Reply.")
      .def(
          "classify_many",
          [](const Classifier& c, py::handle texts, std::string_view destination,
             bool raise_on_error, bool lenient) {
            TextColumn column = CollectTexts(texts);
            ClassificationBatch batch;
            batch.rules = c.RuleNames();
            {
              py::gil_scoped_release release;
              absl::flat_hash_map<std::string_view, int32_t> rule_index;
              for (size_t i = 0; i < batch.rules.size(); ++i) {
                rule_index[batch.rules[i]] = static_cast<int32_t>(i);
              }
              const size_t n = column.views.size();
              batch.Resize(n);
              for (size_t i = 0; i < n; ++i) {
                bool inferred = false;
                absl::StatusOr<Reply> reply = ParseForClassify(column.views[i], lenient, &inferred);
                if (!reply.ok()) {
                  batch.errors.emplace_back(i, std::string(reply.status().message()));
                  if (raise_on_error) break;
                  continue;
                }
                const Classification k = c.Classify(*reply, destination);
                batch.code[i] = static_cast<int16_t>(reply->code);
                batch.enhanced[i] = PackEnhanced(reply->enhanced);
                batch.category[i] = static_cast<uint8_t>(k.category);
                batch.action[i] = static_cast<uint8_t>(k.action);
                batch.transient[i] = k.transient ? 1 : 0;
                auto it = rule_index.find(k.rule);
                batch.rule[i] = it == rule_index.end() ? -1 : it->second;
                batch.ok[i] = 1;
                batch.inferred[i] = inferred ? 1 : 0;
              }
            }
            if (raise_on_error && !batch.errors.empty()) {
              const auto& [index, message] = batch.errors.front();
              ThrowIfError(
                  absl::InvalidArgumentError(absl::StrCat("texts[", index, "]: ", message)));
            }
            return batch;
          },
          py::arg("texts"), py::kw_only(), py::arg("destination") = "",
          py::arg("raise_on_error") = true, py::arg("lenient") = false,
          "Classify many reply texts (list of str or numpy str/object array); GIL released.")
      .def("rule_names", &Classifier::RuleNames, "Rule names in evaluation order.");
}

}  // namespace mailretry::python
