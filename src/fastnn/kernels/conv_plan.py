"""How the convolution kernels (``conv``) split their work, and their scratch.

Python-side planning, all functions of the shapes only (never of the thread
count): slots and samples per product (:func:`plan`), the im2col layout, the
per-slot scratch, shared by every conv layer of a Python thread
(:func:`workspace`, :func:`scratch`), and when the input gradient is computed as
a transposed convolution.
"""
import math
import threading

import numpy as np

from ._jit import inline
from .microkernel import MR

SLOTS = 8  # a batch is split into at least this many slots (fewer samples: one each)
SAMPLES_PER_SLOT = 8  # ... and more slots for large batches
MAX_COLS = 1024  # group samples until a GEMM has about this many columns
COL_ELEMENTS = 1 << 18  # ... or its im2col block this many elements
DW_COLS = 256  # the weight gradient gathers at least this many output pixels at a time,
DW_ELEMENTS = 1 << 16  # ... or as many as an im2col block of this many elements holds
SERIAL_BELOW_MACS = 1 << 20  # a batch smaller than the thread count runs serially below this


@inline
def dw_budget(Kg):
    """Output pixels the weight gradient gathers at a time (its im2col block: Kg rows)."""
    return max(DW_COLS, DW_ELEMENTS // Kg)


class Workspace:
    """Flat reusable buffers, grown when a larger shape or another dtype arrives.
    ``view(name, shape, dtype)`` returns a contiguous view (contents undefined)."""

    def __init__(self):
        self._buffers = {}

    def view(self, name, shape, dtype):
        size = math.prod(shape)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, 1), dtype)
            self._buffers[name] = buf
        return buf[:size].reshape(shape)

    def clear(self):
        self._buffers.clear()


_shared = threading.local()  # conv scratch, shared by every conv layer of one Python thread


def workspace():
    """This Python thread's conv scratch: every layer's calls run one at a time here,
    so one set of buffers, sized for the largest layer, serves them all."""
    work = getattr(_shared, "work", None)
    if work is None:
        work = _shared.work = Workspace()
    return work


def output_size(size, kernel_size, stride, padding, dilation):
    """Convolution output length along one axis (may be <= 0 for bad shapes)."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def plan(N, Kg, P):
    """(slots, samples per GEMM) for P columns per sample: functions of the shapes only."""
    slots = min(N, max(SLOTS, N // SAMPLES_PER_SLOT))
    per_gemm = max(1, min(MAX_COLS // P, COL_ELEMENTS // (Kg * P), -(-N // slots)))
    return slots, per_gemm


def layout(x_shape, geom, out_hw):
    """(OH, pitch) of the forward im2col: wide (pitch = padded width) for stride 1,
    else narrow (pitch = OW). Backward always uses narrow: there the extra columns
    cost more GEMM work than the faster copy saves."""
    OH, OW = out_hw
    return OH, (x_shape[3] + 2 * geom[5] if geom[2] == geom[3] == 1 else OW)


def scratch(x, geom, OC, Kg, OH, pitch, backward=False, dx_cols=False, work=None):
    # per-slot scratch (from ``work``, this thread's workspace by default); the backward
    # needs dout blocks of dw_budget pixels for the weight gradient (_dweight_chunks)
    # and, with ``dx_cols``, one sample's column matrix for the input gradient
    N, G, PH, PW = x.shape[0], geom[8], geom[4], geom[5]
    slots, per_gemm = plan(N, Kg, OH * pitch)
    work = workspace() if work is None else work
    if backward:
        cols = work.view("cols", (slots, Kg * OH * pitch if dx_cols else 1), x.dtype)
        tmps = work.view("tmps", (slots, OC // G * (dw_budget(Kg) + pitch)), x.dtype)
    else:
        cols = work.view("cols", (slots, Kg * per_gemm * OH * pitch), x.dtype)
        # (output channels rounded up to MR rows: the implicit product writes whole tiles)
        tmps = work.view("tmps", (slots, (OC // G + MR - 1) // MR * MR * per_gemm * OH * pitch), x.dtype)
    # per_gemm padded planes, each with a zero tail of KW*DW elements (im2col.pad_image)
    padded = per_gemm * (x.shape[1] // G * (x.shape[2] + 2 * PH) * (x.shape[3] + 2 * PW) + geom[1] * geom[7])
    xps = work.view("xps", (slots, padded), x.dtype)
    return slots, per_gemm, cols, tmps, xps


def transposed_geometry(geom):
    """The geometry whose forward convolution of dout gives dx, or None: stride 1
    and padding at most the dilated kernel extent minus one."""
    KH, KW, SH, SW, PH, PW, DH, DW, G = geom
    QH, QW = DH * (KH - 1) - PH, DW * (KW - 1) - PW
    if SH != 1 or SW != 1 or QH < 0 or QW < 0:
        return None
    return (KH, KW, 1, 1, QH, QW, DH, DW, G)


def transposed_pays(x_shape, out_shape, geom):
    """True if the transposed convolution does at most 30% more multiply-adds than the
    column-matrix product: it computes H * (OW + 2*QW) outputs per channel (wide
    layout), against OH * OW columns there (a large kernel without padding makes a
    small output and a transposed convolution mostly over zeros); and if its
    products have at least MR rows (input channels per group), since the
    micro-kernel computes MR rows whatever the count."""
    QW = transposed_geometry(geom)[5]
    return (x_shape[1] // geom[8] >= MR
            and x_shape[2] * (out_shape[3] + 2 * QW) <= 1.3 * out_shape[2] * out_shape[3])


def transposed_weight(weight, groups):
    """(OC, C/G, KH, KW) -> (C, OC/G, KH, KW): in/out channels swapped within each
    group, kernel flipped in both axes (C-contiguous copy)."""
    OC, Cg, KH, KW = weight.shape
    w = weight.reshape(groups, OC // groups, Cg, KH, KW)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w).reshape(groups * Cg, OC // groups, KH, KW)
