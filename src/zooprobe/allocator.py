"""glibc's allocator settings, in one place: the main process keeps a network's working memory between
batches (:func:`keep_working_memory`), data-loading workers hand theirs back (:func:`bound_worker_heap`).

glibc serves blocks above a threshold by ``mmap`` and returns free memory at the top of its heap to
the kernel past another; both thresholds follow the largest block freed so far, and the heap top is
trimmed again and again as a forward pass's activations (tens of MB a batch) are freed. Each batch then
faults its memory in anew: extracting EfficientNet-Lite0's features of 1,797 digits at 64 px took about
530,000 minor page faults and 0.75-1.3 s of system time out of 3.5-4.4 CPU s on most runs (on a few,
5,000 and 0.01 s). With blocks up to 32 MB kept on the heap and up to 256 MB of free heap kept, the same
extraction took 5,000-11,000 faults and 0.03-0.05 s of system time, 1.45-1.5 s wall instead of
1.95-2.5 s, and the quickstart 48 s instead of 52-54 s (peak memory 1.70 GB instead of 1.60 GB).

:func:`keep_working_memory` sets both thresholds for the process it runs in. The CLI calls it before
the commands that run networks (the process is the CLI's own); in a notebook or a program of your own,
call it yourself if the process is yours to tune. It changes nothing where the user chose already
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or ``ZOOPROBE_KEEP_MEMORY=0``), nor on a C
library other than glibc.
"""

from __future__ import annotations

import os

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (4 MiB x sizeof(long) on 64-bit)
TRIM_THRESHOLD = 256 * 1024 * 1024
# mallopt's parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_kept: bool | None = None


def keep_working_memory() -> bool:
    """Set glibc's mmap threshold to 32 MB and its trim threshold to 256 MB for this process (once).

    Returns whether the thresholds are zooprobe's: False where the user set them or opted out
    (``ZOOPROBE_KEEP_MEMORY=0``), or where the C library is not glibc.
    """
    global _kept
    if _kept is not None:
        return _kept
    _kept = False
    chosen = any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
    if chosen or os.environ.get("ZOOPROBE_KEEP_MEMORY", "1") == "0":
        return False
    # Setting either threshold stops glibc adjusting both. The trim threshold alone left the mmap one at
    # 128 KB and every larger block to mmap (2.5 million faults for the extraction above), so the mmap
    # threshold goes first, and a failure there leaves both as glibc adjusts them.
    _kept = _mallopt((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept


def bound_worker_heap(_worker_id: int) -> None:
    """A data-loading worker's ``worker_init_fn``: its batch-sized buffers come from mmap and go back when
    freed. glibc otherwise raises its mmap threshold at the first free of one and serves the next ones from
    a heap that fragments: a worker then grew by about one batch per batch (measured: 330 MB to 1.5 GB over
    120 batches at 224 px). The opposite of :func:`keep_working_memory`, which a forked worker inherits:
    a worker holds one batch at a time and hands it on, where the main process reuses its activations."""
    _mallopt((_M_MMAP_THRESHOLD, 128 * 1024))  # glibc's own initial value, now fixed


def _mallopt(*settings: tuple[int, int]) -> bool:
    """Each (parameter, value) through glibc's ``mallopt``, in order, stopping at the first it refuses; whether
    all were taken (False off Linux's glibc, whose parameter numbers these are)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):  # glibc is Linux's (and CDLL(None) is not Windows')
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc: its mallopt parameters may mean other things
        return False
    mallopt = libc.mallopt
    mallopt.restype, mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    return all(mallopt(parameter, value) for parameter, value in settings)
