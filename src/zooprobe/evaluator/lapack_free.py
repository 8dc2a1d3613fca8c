"""LAPACK routines called with the interpreter lock released, for scores that run beside each other on threads.

SciPy's f2py wrappers (``scipy.linalg.lapack``) hold the interpreter lock for the whole call. A
Householder reduction of a 1,280 x 1,280 Gram matrix (``dsytrd``, 0.16 s) made a probe on another
thread of the scoring pool take 4.3x its time alone (0.69 against 0.16 s), NumPy's products and
``eigvalsh`` beside it left it as it was. The same LAPACK routines are exported as C function pointers
by ``scipy.linalg.cython_lapack`` (SciPy's public Cython API, the one numba calls too): called
through ctypes, which releases the lock during a foreign call, they leave the other threads running.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

_INT = ctypes.POINTER(ctypes.c_int)
_DOUBLE = ctypes.POINTER(ctypes.c_double)
_CHAR = ctypes.c_char_p
_KINDS = {"char *": _CHAR, "int *": _INT, "d *": _DOUBLE}  # C parameter (SciPy's double typedef: "..._d *")


@cache
def _routine(name: str, *argument_types: Any) -> Any:
    """The LAPACK routine ``name`` of SciPy's ``cython_lapack``, as a ctypes function of ``argument_types``."""
    from scipy.linalg import cython_lapack

    capsule = cython_lapack.__pyx_capi__[name]
    capsule_name = ctypes.pythonapi.PyCapsule_GetName
    capsule_name.restype, capsule_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    pointer = ctypes.pythonapi.PyCapsule_GetPointer
    pointer.restype, pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    # The capsule's name is the C signature: check it is the one called here (32-bit LAPACK integers,
    # doubles), so that a SciPy built otherwise fails loudly instead of reading the wrong widths.
    signature = capsule_name(capsule)
    parameters = signature.decode().removeprefix("void (").removesuffix(")").split(", ")
    kinds = [_KINDS.get("d *" if parameter.endswith("_d *") else parameter) for parameter in parameters]
    if kinds != list(argument_types):
        raise RuntimeError(f"SciPy's cython_lapack.{name} is {signature.decode()}, not the signature zooprobe calls")
    return ctypes.CFUNCTYPE(None, *argument_types)(pointer(capsule, signature))


def _int(value: int) -> Any:
    return ctypes.byref(ctypes.c_int(value))


def _doubles(array: Any) -> Any:
    return array.ctypes.data_as(_DOUBLE)


def dsytrd_lower(matrix: Any) -> tuple[Any, Any, Any, int]:
    """``dsytrd`` (lower) of the symmetric float64 Fortran-ordered ``matrix``, overwritten with the reflectors:
    (diagonal, off-diagonal, tau, info), as ``scipy.linalg.lapack.dsytrd(matrix, lower=1, overwrite_a=1)``."""
    import numpy as np

    if matrix.dtype != np.float64 or not matrix.flags.f_contiguous or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("dsytrd_lower takes a square float64 matrix in Fortran order")
    routine = _routine("dsytrd", _CHAR, _INT, _DOUBLE, _INT, _DOUBLE, _DOUBLE, _DOUBLE, _DOUBLE, _INT, _INT)
    n = len(matrix)
    diagonal, off_diagonal, tau = np.empty(n), np.empty(max(n - 1, 1)), np.empty(max(n - 1, 1))
    info = ctypes.c_int(0)
    size = np.empty(1)
    arguments = (_doubles(matrix), _int(max(n, 1)), _doubles(diagonal), _doubles(off_diagonal), _doubles(tau))
    routine(b"L", _int(n), *arguments, _doubles(size), _int(-1), ctypes.byref(info))  # workspace query
    work = np.empty(max(int(size[0]), 1))
    routine(b"L", _int(n), *arguments, _doubles(work), _int(len(work)), ctypes.byref(info))
    return diagonal, off_diagonal[: max(n - 1, 0)], tau[: max(n - 1, 0)], int(info.value)


def dpotrf_lower(matrix: Any) -> None:
    """Cholesky factor L (lower) of the symmetric positive definite float64 Fortran-ordered ``matrix``, in its
    lower triangle (the upper one is left as it was), as ``scipy.linalg.cholesky(matrix, lower=True)`` computes it.

    :raises numpy.linalg.LinAlgError: ``matrix`` is not positive definite.
    """
    import numpy as np

    if matrix.dtype != np.float64 or not matrix.flags.f_contiguous or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("dpotrf_lower takes a square float64 matrix in Fortran order")
    routine = _routine("dpotrf", _CHAR, _INT, _DOUBLE, _INT, _INT)
    info = ctypes.c_int(0)
    routine(b"L", _int(len(matrix)), _doubles(matrix), _int(max(len(matrix), 1)), ctypes.byref(info))
    if info.value > 0:
        raise np.linalg.LinAlgError(f"{info.value}-th leading minor of the array is not positive definite")
    if info.value < 0:
        raise ValueError(f"dpotrf: argument {-info.value} is invalid")
