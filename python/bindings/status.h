// File: status.h
// The one place where absl::Status crosses into Python: status codes map to
// the exception classes of mailretry.errors (created here, in C++).
#ifndef MAILRETRY_PYTHON_BINDINGS_STATUS_H_
#define MAILRETRY_PYTHON_BINDINGS_STATUS_H_

#include <pybind11/pybind11.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mailretry::python {

// Creates the exception hierarchy on module `m`:
//   MailretryError(Exception)
//   InvalidInputError(MailretryError, ValueError)   InvalidArgument, OutOfRange
//   UnknownIdError(MailretryError, KeyError)        NotFound
//   DuplicateIdError(MailretryError, KeyError)      AlreadyExists
//   StateError(MailretryError, RuntimeError)        FailedPrecondition
//     StaleLeaseError(StateError)                   FailedPrecondition + kStaleLeasePayload
//   CorruptDataError(MailretryError, ValueError)    DataLoss
//   StorageError(MailretryError, OSError)           Unavailable, PermissionDenied
//     MissingFileError(StorageError, FileNotFoundError)  NotFound, from ThrowIfFileError
//   InternalError(MailretryError, RuntimeError)     everything else
void RegisterErrors(pybind11::module_& m);

// Raises the mapped Python exception (as pybind11::error_already_set) when
// `status` is not OK. Call with the GIL held.
void ThrowIfError(const absl::Status& status);

// As ThrowIfError, for calls that read a named file: NotFound means the file
// is missing (MissingFileError), not an unknown id.
void ThrowIfFileError(const absl::Status& status);

template <typename T>
T ValueOrThrow(absl::StatusOr<T> result) {
  ThrowIfError(result.status());
  return *std::move(result);
}

}  // namespace mailretry::python

#endif  // MAILRETRY_PYTHON_BINDINGS_STATUS_H_
