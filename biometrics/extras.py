"""Optional dependency groups (``pip install 'retauth[<extra>]'``) and what needs them.

The runtime install has no torch, TVM, web server or PostgreSQL driver. A command that needs
one says so in one line and exits 2 (:class:`~biometrics.errors.MissingExtra`) instead of
failing with a ``ModuleNotFoundError`` deep inside; ``--help`` offers only the segmentation
backends that can load here. Availability is checked with ``importlib.util.find_spec``,
which finds a package without importing it (importing torch alone takes seconds).
"""

from __future__ import annotations

import importlib.util

from biometrics.errors import EXTRA_OF_MODULE, MissingExtra

#: Segmentation backend → modules it needs beyond the runtime install.
BACKEND_MODULES = {
    "auto": (),
    "onnxruntime": (),
    "classical": (),
    "tvm": ("tvm_ffi", "tvm"),
    "torch": ("torch",),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(what: str, *modules: str) -> None:
    """Raise :class:`MissingExtra` naming the extra of the first module that is missing."""
    for module in modules:
        if not installed(module):
            raise MissingExtra(what, EXTRA_OF_MODULE.get(module, module), module)


def available_backends() -> tuple[str, ...]:
    """Backends whose modules are installed, in the order ``--help`` lists them."""
    return tuple(b for b, mods in BACKEND_MODULES.items() if all(installed(m) for m in mods))


def require_backend(backend: str) -> None:
    """Refuse a backend whose extra is missing (an unknown name is left to the loader)."""
    require(f"the {backend} backend", *BACKEND_MODULES.get(backend, ()))
