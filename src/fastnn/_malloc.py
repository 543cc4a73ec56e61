"""Keep large freed blocks for reuse in glibc's allocator (Linux only).

A training step allocates and frees the same large arrays every step (layer
outputs, gradients). glibc serves blocks above its mmap threshold (128 KiB at
start) with fresh ``mmap`` calls and gives them back with ``munmap``, so every
step touches new pages: one page fault per 4 KiB, 10-25% of a convolutional
training step. glibc raises that threshold by itself as large blocks are freed,
up to 32 MiB, and keeps up to twice the threshold of free memory at the top of the
heap; this module starts the process at that ceiling instead of creeping up to
it, so a repeated step reuses its own freed pages.

The cost: up to ``TRIM_THRESHOLD`` (64 MiB) of freed memory may stay mapped to
the process instead of going back to the system, as glibc itself allows once
its threshold has grown. Peak memory is unchanged.

Applied once, when ``fastnn`` is imported, unless ``FASTNN_MALLOC_TUNING=0``, or
the user already tunes glibc's allocator (``GLIBC_TUNABLES`` with malloc
settings, or ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``), or the C
library is not glibc. :data:`STATE` says what happened (``fastnn info`` prints it).
"""
import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc's dynamic rule pairs with it

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _skip_reason(environ, platform):
    if environ.get("FASTNN_MALLOC_TUNING", "1").strip().lower() in ("0", "off", "false", "no"):
        return "off (FASTNN_MALLOC_TUNING=0)"
    if not platform.startswith("linux"):
        return f"off (not Linux: {platform})"
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "off (the environment already tunes malloc: GLIBC_TUNABLES)"
    for name in _USER_SETTINGS:
        if name in environ:
            return f"off (the environment already tunes malloc: {name})"
    return None


def tune(environ=None, platform=None):
    """Apply the thresholds if allowed here; return a line saying what was done."""
    reason = _skip_reason(os.environ if environ is None else environ, platform or sys.platform)
    if reason:
        return reason
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "off (the C library is not glibc)"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return f"off (glibc {version} refused the settings)"
    return f"on (glibc {version}: mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB)"


STATE = tune()
