// File: text_column.h
// Borrowed UTF-8 views of many Python strings, for batch calls that work on
// text with the GIL released: a list/tuple of str or bytes, or a numpy array
// of dtype str ('U'), bytes ('S') or object.
#ifndef MAILRETRY_PYTHON_BINDINGS_TEXT_COLUMN_H_
#define MAILRETRY_PYTHON_BINDINGS_TEXT_COLUMN_H_

#include <pybind11/pybind11.h>

#include <string>
#include <string_view>
#include <vector>

namespace mailretry::python {

struct TextColumn {
  std::vector<std::string_view> views;  // one per input item
  std::string storage;                  // UTF-8 converted from numpy 'U'/'S' arrays
  pybind11::object keep_alive;          // the sequence whose items the views point into
};

// Collects the texts; needs the GIL. The views stay valid while the returned
// column lives. InvalidInputError for anything that is not text, naming `what`
// and the index.
TextColumn CollectTexts(pybind11::handle texts, const char* what = "texts");

}  // namespace mailretry::python

#endif  // MAILRETRY_PYTHON_BINDINGS_TEXT_COLUMN_H_
