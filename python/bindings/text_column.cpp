#include "text_column.h"

#include <pybind11/numpy.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "status.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// memcmp against zeros runs vectorized; a byte loop over long padding did not.
bool AllZero(const char* p, size_t n) {
  static const char kZeros[4096] = {};
  while (n > 0) {
    const size_t chunk = n < sizeof(kZeros) ? n : sizeof(kZeros);
    if (std::memcmp(p, kZeros, chunk) != 0) return false;
    p += chunk;
    n -= chunk;
  }
  return true;
}

// Fixed-width numpy items are zero-padded. The text is converted up to its
// first zero code unit; the padding after it is only checked to be all zero
// (a fast byte scan), so that an embedded NUL still reaches the parser and is
// rejected there instead of silently cutting the text.
void AppendUcs4Item(std::string& out, const char* item, size_t chars) {
  size_t k = 0;
  for (; k < chars; ++k) {
    uint32_t cp;
    std::memcpy(&cp, item + 4 * k, 4);
    if (cp == 0) break;
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else {
      AppendUtf8(out, cp);
    }
  }
  if (AllZero(item + 4 * k, 4 * (chars - k))) return;
  for (; k < chars; ++k) {  // embedded NUL: keep everything up to the last non-zero unit
    uint32_t cp;
    std::memcpy(&cp, item + 4 * k, 4);
    AppendUtf8(out, cp);
  }
  while (!out.empty() && out.back() == '\0') out.pop_back();
}

}  // namespace

TextColumn CollectTexts(py::handle texts, const char* what) {
  TextColumn column;
  if (py::isinstance<py::array>(texts)) {
    auto array = py::reinterpret_borrow<py::array>(texts);
    if (array.ndim() != 1) {
      ThrowIfError(absl::InvalidArgumentError(absl::StrCat(what, " must be 1-dimensional")));
    }
    const char kind = array.dtype().kind();
    const size_t n = static_cast<size_t>(array.shape(0));
    if (kind == 'U' || kind == 'S') {
      const size_t itemsize = static_cast<size_t>(array.itemsize());
      auto contiguous = py::array::ensure(array, py::array::c_style);
      const char* base = static_cast<const char*>(contiguous.data());
      std::vector<std::pair<size_t, size_t>> spans;
      spans.reserve(n);
      {
        py::gil_scoped_release release;
        for (size_t i = 0; i < n; ++i) {
          const char* item = base + i * itemsize;
          const size_t start = column.storage.size();
          if (kind == 'S') {
            size_t len = itemsize;
            while (len > 0 && item[len - 1] == '\0') --len;  // numpy's own 'S' semantics
            column.storage.append(item, len);
          } else {
            AppendUcs4Item(column.storage, item, itemsize / 4);
          }
          spans.emplace_back(start, column.storage.size() - start);
        }
      }
      column.views.reserve(n);
      for (const auto& [start, len] : spans) {
        column.views.emplace_back(column.storage.data() + start, len);
      }
      return column;
    }
    if (kind != 'O') {
      ThrowIfError(absl::InvalidArgumentError(
          absl::StrCat(what, " must be str, bytes or object array, got dtype kind '",
                       std::string(1, kind), "'")));
    }
  }
  // PySequence_Fast returns the list/tuple itself (or a new list holding the
  // same items); the views point into those items' UTF-8 buffers.
  py::object fast =
      py::reinterpret_steal<py::object>(PySequence_Fast(texts.ptr(), "expected a sequence of str"));
  if (!fast) throw py::error_already_set();
  const size_t n = static_cast<size_t>(PySequence_Fast_GET_SIZE(fast.ptr()));
  column.keep_alive = fast;
  column.views.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    PyObject* item = PySequence_Fast_GET_ITEM(fast.ptr(), static_cast<Py_ssize_t>(i));
    if (PyUnicode_Check(item)) {
      Py_ssize_t size = 0;
      const char* data = PyUnicode_AsUTF8AndSize(item, &size);
      if (data == nullptr) throw py::error_already_set();
      column.views.emplace_back(data, static_cast<size_t>(size));
    } else if (PyBytes_Check(item)) {
      column.views.emplace_back(PyBytes_AS_STRING(item),
                                static_cast<size_t>(PyBytes_GET_SIZE(item)));
    } else {
      ThrowIfError(absl::InvalidArgumentError(absl::StrCat(
          what, "[", i, "] is not a str (", std::string(py::str(py::type::handle_of(item))), ")")));
    }
  }
  return column;
}

}  // namespace mailretry::python
