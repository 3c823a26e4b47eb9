"""The error contract shared by all packages: named categories, each with its exit code.

Packages raise these (or subclasses); the CLI and the kiosk map ``exit_code`` to a process
status or an HTTP status. Exceptions from third-party libraries (Pillow, OpenCV, ONNX
Runtime, TVM, SQLAlchemy, the C runtime's ``MemoryError``...) are turned into a category by
:func:`translate` at the boundary, so a user never sees ``cv2.error`` or ``AttributeError``
and a script can rely on the code:

=================================  ====  ===========================================
category                           exit  examples
=================================  ====  ===========================================
invalid input                      2     unreadable image, unknown user, bad option
failure to acquire                 2     a capture too poor to yield a template
configuration                      2     malformed setting, missing optional extra
unsupported or corrupt stored data 3     tampered record, template of a newer version
store unavailable                  3     database unreachable, read-only, full
internal                           3     a bug: anything not classified above
=================================  ====  ===========================================

An exception that is not classified is *internal* (exit 3), never "bad input": a
``ValueError`` raised by a bug deep in numpy is not the user's fault, and calling it exit 2
would make a script retry with other input forever.
"""

from __future__ import annotations

import sys


class RetauthError(Exception):
    """Base of all retauth errors; the message is a single user-facing line."""

    exit_code = 3
    category = "internal"


class InputError(RetauthError, ValueError):
    """Bad input or usage (unreadable image, unknown user, bad option value...): exit 2."""

    exit_code = 2
    category = "invalid input"


class FailureToAcquire(InputError):
    """The capture is too poor to yield a reliable template (ISO/IEC 19795-1 FTA)."""

    category = "failure to acquire"


class ConfigurationError(InputError):
    """A setting, a configuration file or the installation itself is wrong: exit 2.

    Exit 2 because the operator can fix it without touching data (edit the setting, install
    the extra); nothing is wrong with the store.
    """

    category = "configuration"


class MissingExtra(ConfigurationError):
    """A command needs an optional dependency group (``pip install 'retauth[<extra>]'``)."""

    def __init__(self, what: str, extra: str, module: str | None = None) -> None:
        detail = f" (module {module} not found)" if module else ""
        super().__init__(
            f"{what} needs the '{extra}' extra: pip install 'retauth[{extra}]'{detail}"
        )
        self.extra = extra


#: Top-level module of an optional dependency → the extra that installs it.
EXTRA_OF_MODULE = {
    "torch": "train",
    "onnxscript": "train",
    "onnx": "train",
    "tvm": "tvm",
    "tvm_ffi": "tvm",
    "starlette": "kiosk",
    "uvicorn": "kiosk",
    "psycopg": "postgres",
    "dask": "dist",
    "distributed": "dist",
}


class StoreError(RetauthError):
    """The template store cannot be reached or written (I/O, locked, read-only, full): exit 3."""

    exit_code = 3
    category = "store unavailable"


class StoredDataError(StoreError):
    """Stored data is corrupt, tampered with, or of a format this version does not support.

    A template of a newer format version is this, not bad input: the request was fine, the
    installation is older than its data (exit 3, the operator upgrades).
    """

    category = "unsupported or corrupt stored data"


class InternalError(RetauthError):
    """A failure that is nobody's input: a bug, or the machine running out of memory."""


def _module_of(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _is_instance(exc: BaseException, module: str, name: str) -> bool:
    """``isinstance`` against a class of a module only if that module is already imported.

    Translation must not import Pillow, OpenCV or SQLAlchemy just to classify an error.
    """
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(exc, cls)


def translate(exc: BaseException) -> RetauthError:
    """The category of any exception, as a :class:`RetauthError` with a one-line message.

    A :class:`RetauthError` is returned unchanged. A missing optional module names its
    extra. Known foreign exceptions are classified:
    image decoding errors are invalid input, OpenCV allocation failures and ``MemoryError``
    are "out of memory" (internal), database driver errors mean the store is unavailable.
    Everything else is :class:`InternalError` with the exception's type in the
    message, so a bug report says what happened.
    """
    if isinstance(exc, RetauthError):
        return exc
    text = " ".join(str(exc).split())
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in EXTRA_OF_MODULE:
            return MissingExtra("this command", EXTRA_OF_MODULE[top], top)
    if _is_instance(exc, "segmentation.imageio", "InvalidImage"):
        return InputError(text or "the image cannot be read")
    if _is_instance(exc, "PIL.Image", "DecompressionBombError"):
        return InputError("the image has too many pixels to decode safely")
    if _is_instance(exc, "PIL", "UnidentifiedImageError"):
        return InputError("not a recognised image file")
    if isinstance(exc, MemoryError) or (
        _is_instance(exc, "cv2", "error")
        and any(s in text.lower() for s in ("insufficient memory", "failed to allocate"))
    ):
        # Inputs are bounded before anything is allocated (imageio, preprocessing), so
        # running out of memory is the machine's state, not a property of the input: it is
        # not cached as a failure to acquire, and a retry later may succeed.
        return InternalError("internal error: out of memory")
    if _is_instance(exc, "cv2", "error"):
        # OpenCV's message is several lines of C++ source location; keep its last clause.
        reason = text.rsplit(") ", 1)[-1] or "OpenCV failed"
        return InternalError(f"internal error: image processing failed ({reason})")
    module = _module_of(exc)
    if module.startswith(("sqlalchemy", "sqlite3", "psycopg")):
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return StoreError(f"the template store is unavailable ({type(exc).__name__}: {first})")
    if module.startswith("onnxruntime"):
        return InternalError(f"internal error: ONNX Runtime failed ({type(exc).__name__})")
    if module.startswith(("tvm", "tvm_ffi")):
        return InternalError(f"internal error: TVM failed ({type(exc).__name__})")
    if isinstance(exc, OverflowError):
        return InternalError("internal error: a number is out of range (OverflowError)")
    return InternalError(f"internal error: {type(exc).__name__}: {text}".rstrip(": "))
