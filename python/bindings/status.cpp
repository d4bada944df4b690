#include "status.h"

#include <string>

#include "mailretry/engine/engine.h"

namespace py = pybind11;

namespace mailretry::python {
namespace {

struct ErrorClasses {
  py::object base, invalid_input, unknown_id, duplicate_id, state, stale_lease, corrupt, storage,
      missing_file, internal;
};

// Lives as long as the interpreter: module objects are never unloaded.
ErrorClasses* classes = nullptr;

py::object MakeClass(py::module_& m, const char* name, py::tuple bases, const char* doc) {
  py::dict ns;
  ns["__module__"] = "mailretry.errors";
  ns["__doc__"] = doc;
  py::object cls = py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&PyType_Type))(
      name, bases, ns);
  m.attr(name) = cls;
  return cls;
}

}  // namespace

void RegisterErrors(py::module_& m) {
  classes = new ErrorClasses();
  py::handle exc(PyExc_Exception), value(PyExc_ValueError), key(PyExc_KeyError),
      runtime(PyExc_RuntimeError), os(PyExc_OSError), not_found(PyExc_FileNotFoundError);
  classes->base = MakeClass(m, "MailretryError", py::make_tuple(exc),
                            "Base class of every error raised by mailretry.");
  const py::object& b = classes->base;
  classes->invalid_input = MakeClass(m, "InvalidInputError", py::make_tuple(b, value),
                                     "Malformed input: a reply, a config value, a time, a rule.");
  classes->unknown_id = MakeClass(m, "UnknownIdError", py::make_tuple(b, key),
                                  "An id (message, slot, destination) that is not known.");
  classes->duplicate_id =
      MakeClass(m, "DuplicateIdError", py::make_tuple(b, key),
                "An id that is already in use (e.g. a message submitted twice).");
  classes->state = MakeClass(m, "StateError", py::make_tuple(b, runtime),
                             "The call is valid but not in the current state (e.g. a report "
                             "for a message that is not leased).");
  classes->stale_lease = MakeClass(
      m, "StaleLeaseError", py::make_tuple(classes->state),
      "A report for a lease that is no longer current (it timed out and the message was leased "
      "again, or it was already reported): counted in stats() and ignored.");
  classes->corrupt = MakeClass(m, "CorruptDataError", py::make_tuple(b, value),
                               "A snapshot or journal that is truncated or fails its checksum.");
  classes->storage =
      MakeClass(m, "StorageError", py::make_tuple(b, os), "Reading or writing a file failed.");
  classes->missing_file =
      MakeClass(m, "MissingFileError", py::make_tuple(classes->storage, not_found),
                "A file to read (snapshot, config) does not exist.");
  classes->internal = MakeClass(m, "InternalError", py::make_tuple(b, runtime),
                                "A bug in mailretry: please report it.");
}

void ThrowIfFileError(const absl::Status& status) {
  if (absl::IsNotFound(status)) {
    PyErr_SetString(classes->missing_file.ptr(), std::string(status.message()).c_str());
    throw py::error_already_set();
  }
  ThrowIfError(status);
}

void ThrowIfError(const absl::Status& status) {
  if (status.ok()) return;
  const py::object* cls = &classes->internal;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      cls = &classes->invalid_input;
      break;
    case absl::StatusCode::kNotFound:
      cls = &classes->unknown_id;
      break;
    case absl::StatusCode::kAlreadyExists:
      cls = &classes->duplicate_id;
      break;
    case absl::StatusCode::kFailedPrecondition:
      cls = status.GetPayload(kStaleLeasePayload).has_value() ? &classes->stale_lease
                                                              : &classes->state;
      break;
    case absl::StatusCode::kDataLoss:
      cls = &classes->corrupt;
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kPermissionDenied:
      cls = &classes->storage;
      break;
    default:
      break;
  }
  PyErr_SetString(cls->ptr(), std::string(status.message()).c_str());
  throw py::error_already_set();
}

}  // namespace mailretry::python
