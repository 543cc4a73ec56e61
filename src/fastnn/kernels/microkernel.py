"""The GEMM micro-kernel and the packing of its A operand, shared by every product.

``micro`` keeps an MR x NR block of the output in vector registers while it walks
K over an A panel (MR rows, k-major) and a B panel (NR columns, k-major); NR is NV
64-byte vectors: 32 float32 or 16 float64 columns. ``matmul``, the convolutions'
implicit GEMMs (``conv_gemm``) and the recurrent products (``recurrent_product``)
pack their operands in these layouts and call it; K blocks of at most KC keep a B
panel in L1. ``_jit.typed`` makes the shared kernels compile once per argument type.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import inline, serial_kernel, typed

MR = 8  # micro-tile rows
NV = 2  # micro-tile width in 64-byte vectors: NR = 32 float32 or 16 float64 columns
KC = 256  # depth of a packed block: a KC x NR panel of b stays in L1


def accumulator_loop(builder, count, vty, n, step):
    """Emit ``for k in range(count)`` (count: i64, at least 1) carrying ``n`` vectors of
    type ``vty``, zero at the start; ``step(k, accumulators)`` emits one iteration's body
    and returns the new accumulators. Returns their values after the loop, with the
    builder placed after it. (The register-resident FMA loop of the micro-kernels, and
    of ``bench/peak_flops.py``.)"""
    i64 = ir.IntType(64)
    entry = builder.basic_block
    loop = builder.append_basic_block("acc.loop")
    done = builder.append_basic_block("acc.done")
    builder.branch(loop)
    builder.position_at_end(loop)
    k = builder.phi(i64)
    accs = [builder.phi(vty) for _ in range(n)]
    new = step(k, accs)
    k1 = builder.add(k, ir.Constant(i64, 1))
    builder.cbranch(builder.icmp_signed("<", k1, count), loop, done)
    k.add_incoming(ir.Constant(i64, 0), entry)
    k.add_incoming(k1, builder.basic_block)
    for acc, value in zip(accs, new):
        acc.add_incoming(ir.Constant(vty, None), entry)
        acc.add_incoming(value, builder.basic_block)
    builder.position_at_end(done)
    return new


def vector_bytes(features):
    """The width of a vector register on a CPU with these LLVM target features
    ("+avx512f,..."): 64 bytes with AVX-512, 32 with AVX, else 16."""
    enabled = set(f[1:] for f in features.split(",") if f.startswith("+"))
    return 64 if "avx512f" in enabled else 32 if "avx" in enabled else 16


def register_budget(features):
    """How many 64-byte accumulator vectors a micro-tile keeps in registers on a CPU
    with these LLVM target features: 16 of the 32 zmm registers with AVX-512 (the
    whole MR x NV tile); else 12 of the 16 registers, a 64-byte vector being two ymm
    (AVX) or four xmm registers."""
    width = vector_bytes(features)
    return 16 if width == 64 else 12 * width // 64


def sub_tiles(rows, vectors, budget):
    """Split a ``rows`` x ``vectors`` micro-tile into sub-tiles of at most ``budget``
    accumulator vectors, as (first row, rows, first vector, vectors): one vector
    column at a time and rows in near-equal groups (an 8-row tile on AVX2: two
    4 x 16-float halves per vector), or, for a single row, vectors in equal groups."""
    if rows * vectors <= budget:
        return [(0, rows, 0, vectors)]
    if rows == 1:
        groups = -(-vectors // budget)
        bounds = [vectors * g // groups for g in range(groups + 1)]
        return [(0, 1, v0, v1 - v0) for v0, v1 in zip(bounds, bounds[1:])]
    groups = -(-rows // budget)
    bounds = [rows * g // groups for g in range(groups + 1)]
    return [(r0, r1 - r0, v, 1) for v in range(vectors) for r0, r1 in zip(bounds, bounds[1:])]


def _emit_micro(context, builder, fty, cb, ldc, a_scalar, b_vector, kc, add, rows=MR, vectors=NV):
    """Emit the ``rows`` x ``vectors`` micro-tile (MR x NV unless told): c (pointer cb,
    row stride ldc) (+)= sum over k < kc of A(r, k) * B(k, :), A's element at
    ``a_scalar(k, r)`` (a pointer), B's v-th vector at ``b_vector(k, v)`` (a vector
    pointer); ``+=`` when ``add`` != 0.

    A tile with more accumulators than the target CPU's registers hold
    (:func:`register_budget`: an 8 x 32-float tile is 32 ymm registers on AVX2) is
    computed as sub-tiles, each its own loop over k: every output is still the same
    sum in the same order, and nothing spills."""
    budget = register_budget(context.codegen()._tm_features)
    for r0, nr, v0, nv in sub_tiles(rows, vectors, budget):
        _emit_tile(context, builder, fty, cb, ldc, a_scalar, b_vector, kc, add, r0, nr, v0, nv)


def _emit_tile(context, builder, fty, cb, ldc, a_scalar, b_vector, kc, add, r0, rows, v0, vectors):
    """Rows r0 .. r0 + rows and vectors v0 .. v0 + vectors of ``_emit_micro``'s tile."""
    size = context.get_abi_sizeof(fty)
    W = 64 // size
    vty, i64 = ir.VectorType(fty, W), ir.IntType(64)
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty] * 3), f"llvm.fma.v{W}f{8 * size}")
    lanes = ir.Constant(ir.VectorType(ir.IntType(32), W), [0] * W)

    def step(k, accs):
        bv = [builder.load(b_vector(k, v0 + v), align=size) for v in range(vectors)]
        new = []
        for r in range(rows):
            s = builder.load(a_scalar(k, r0 + r))
            s = builder.insert_element(ir.Constant(vty, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
            s = builder.shuffle_vector(s, ir.Constant(vty, ir.Undefined), lanes)
            new += [builder.call(fma, [s, bv[v], accs[r * vectors + v]]) for v in range(vectors)]
        return new

    new = accumulator_loop(builder, kc, vty, rows * vectors, step)
    add = builder.icmp_unsigned("!=", add, ir.Constant(add.type, 0))
    for r in range(rows):
        for v in range(vectors):
            at = builder.add(builder.mul(ldc, ir.Constant(i64, r0 + r)), ir.Constant(i64, (v0 + v) * W))
            p = builder.bitcast(builder.gep(cb, [at], inbounds=True), vty.as_pointer())
            value = new[r * vectors + v]
            value = builder.select(add, builder.fadd(builder.load(p, align=size), value), value)
            builder.store(value, p, align=size)


def _data(context, builder, aty, arr, off):
    """Pointer to element ``off`` of array ``arr`` (Numba type ``aty``)."""
    data = cgutils.create_struct_proxy(aty)(context, builder, value=arr).data
    return builder.gep(data, [off], inbounds=True)


def _vector_at(builder, fty, base, off):
    return builder.bitcast(builder.gep(base, [off], inbounds=True), ir.VectorType(fty, 64 // _bytes(fty)).as_pointer())


def _bytes(fty):
    return 8 if isinstance(fty, ir.DoubleType) else 4


def _packed_b(builder, fty, bb):
    """The ``b_vector(k, v)`` of :func:`_emit_micro` for B packed in NR-column panels
    (k-major) from pointer ``bb``."""
    i64, W = ir.IntType(64), 64 // _bytes(fty)
    return lambda k, v: _vector_at(builder, fty, bb, builder.add(builder.mul(k, ir.Constant(i64, NV * W)),
                                                                 ir.Constant(i64, v * W)))


def _micro_codegen(a_scalar):
    """The codegen of a micro-kernel whose A element (r, k) is at ``a_scalar(builder,
    k, r, row, lda)`` from the A operand's data pointer plus its offset (k: the loop's
    i64 counter, row: r * lda), B packed in NR-column panels."""
    def codegen(context, builder, signature, args):
        c, c_off, ldc, a, a_off, lda, bp, b_off, kc, add = args
        fty = context.get_value_type(signature.args[0].dtype)
        i64 = ir.IntType(64)
        cb = _data(context, builder, signature.args[0], c, c_off)
        ab = _data(context, builder, signature.args[3], a, a_off)
        bb = _data(context, builder, signature.args[6], bp, b_off)
        rows = [builder.mul(lda, ir.Constant(i64, r)) for r in range(MR)]
        _emit_micro(
            context, builder, fty, cb, ldc,
            lambda k, r: builder.gep(ab, [a_scalar(builder, k, r, rows[r], lda)], inbounds=True),
            _packed_b(builder, fty, bb), kc, add)
        return context.get_dummy_value()

    return codegen


def _packed_a(builder, k, r, row, lda):
    i64 = ir.IntType(64)
    return builder.add(builder.mul(k, ir.Constant(i64, MR)), ir.Constant(i64, r))


def _row_major_a(builder, k, r, row, lda):
    return builder.add(row, k)


def _col_major_a(builder, k, r, row, lda):
    return builder.add(builder.mul(k, lda), ir.Constant(ir.IntType(64), r))


@intrinsic
def micro(typingctx, c, c_off, ldc, ap, a_off, bp, b_off, kc, add):
    """c[c_off + r*ldc + j] (+)= sum_k ap[a_off + k*MR + r] * bp[b_off + k*NR + j]
    for r < MR, j < NR, k < kc (kc >= 1); ``+=`` when ``add``. Emitted as LLVM IR
    so the MR*NV accumulator vectors live in registers (zmm FMAs with broadcast A)."""
    sig = types.void(c, c_off, ldc, ap, a_off, bp, b_off, kc, add)
    body = _micro_codegen(_packed_a)

    def codegen(context, builder, signature, args):
        c, c_off, ldc, ap, a_off, bp, b_off, kc, add = args
        full = types.void(*signature.args[:5], types.int64, *signature.args[5:])
        return body(context, builder, full, (c, c_off, ldc, ap, a_off, ir.Constant(ir.IntType(64), 0), bp, b_off,
                                             kc, add))

    return sig, codegen


@intrinsic
def micro_rows(typingctx, c, c_off, ldc, a, a_off, lda, bp, b_off, kc, add):
    """``micro`` with A unpacked, row-major: element (r, k) at a's data[a_off + r*lda + k]
    (a: any array whose data holds the rows, columns unit-stride). The same sums in the
    same order as ``micro`` on the packed rows, without packing them (cheaper when
    the rows meet few panels of B)."""
    return types.void(c, c_off, ldc, a, a_off, lda, bp, b_off, kc, add), _micro_codegen(_row_major_a)


@intrinsic
def micro_cols(typingctx, c, c_off, ldc, a, a_off, lda, bp, b_off, kc, add):
    """``micro`` with A unpacked, column-major: element (r, k) at a's data[a_off + k*lda
    + r] (the packed layout with a stride of lda between k instead of MR): A^T's rows
    read in place. The same sums in the same order as ``micro`` on them packed."""
    return types.void(c, c_off, ldc, a, a_off, lda, bp, b_off, kc, add), _micro_codegen(_col_major_a)


ROW_PANELS = 4  # panels of B that micro_row walks at once: 4 * NV accumulator vectors


def _row_codegen(panels):
    """The codegen of a one-row micro-kernel over ``panels`` consecutive NR-column
    panels of a packed B, ``pstride`` elements apart."""
    def codegen(context, builder, signature, args):
        c, c_off, a, a_off, bp, b_off, pstride, kc, add = args
        fty = context.get_value_type(signature.args[0].dtype)
        W, i64 = 64 // _bytes(fty), ir.IntType(64)
        cb = _data(context, builder, signature.args[0], c, c_off)
        ab = _data(context, builder, signature.args[2], a, a_off)
        bb = _data(context, builder, signature.args[4], bp, b_off)

        def b_vector(k, v):  # vector v: panel v // NV, its (v % NV)-th vector of row k
            panel = builder.mul(pstride, ir.Constant(i64, v // NV))
            return _vector_at(builder, fty, bb, builder.add(
                panel, builder.add(builder.mul(k, ir.Constant(i64, NV * W)), ir.Constant(i64, v % NV * W))))

        _emit_micro(context, builder, fty, cb, ir.Constant(i64, 0), lambda k, r: builder.gep(ab, [k], inbounds=True),
                    b_vector, kc, add, rows=1, vectors=panels * NV)
        return context.get_dummy_value()

    return codegen


@intrinsic
def micro_row(typingctx, c, c_off, a, a_off, bp, b_off, pstride, kc, add):
    """One row times ROW_PANELS panels of B: c[c_off + p*NR + j] (+)= sum over k < kc
    of a[a_off + k] * bp[b_off + p*pstride + k*NR + j] for p < ROW_PANELS, j < NR
    (kc >= 1). A matrix-vector product reads each element of B once, so it runs at the
    speed B streams in: 4 * NV accumulators hide the FMA latency that one panel's NV
    would expose. Each output is summed over k in the order ``micro`` sums it."""
    return types.void(c, c_off, a, a_off, bp, b_off, pstride, kc, add), _row_codegen(ROW_PANELS)


@intrinsic
def micro_row1(typingctx, c, c_off, a, a_off, bp, b_off, pstride, kc, add):
    """``micro_row`` over one panel (the panels left over after groups of ROW_PANELS)."""
    return types.void(c, c_off, a, a_off, bp, b_off, pstride, kc, add), _row_codegen(1)


def _offs_codegen(rows):
    """The codegen of ``micro_offs`` over the first ``rows`` rows of the A panel."""
    def codegen(context, builder, signature, args):
        c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add = args
        fty = context.get_value_type(signature.args[0].dtype)
        W = 64 // _bytes(fty)
        i64 = ir.IntType(64)
        cb = _data(context, builder, signature.args[0], c, c_off)
        ab = _data(context, builder, signature.args[3], ap, a_off)
        bb = _data(context, builder, signature.args[5], b, b_off)
        ob = _data(context, builder, signature.args[7], offs, o_off)

        def b_vector(k, v):  # (LLVM merges the NV loads of the row's offset into one)
            row = builder.load(builder.gep(ob, [k], inbounds=True))
            return _vector_at(builder, fty, bb, builder.add(row, ir.Constant(i64, v * W)))

        _emit_micro(context, builder, fty, cb, ldc,
                    lambda k, r: builder.gep(ab, [_packed_a(builder, k, r, None, None)], inbounds=True),
                    b_vector, kc, add, rows=rows)
        return context.get_dummy_value()

    return codegen


@intrinsic
def micro_offs(typingctx, c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add):
    """``micro`` with B unpacked, each of its rows a run of NR elements somewhere in b:
    B(k, j) = b's data[b_off + offs[o_off + k] + j] (offs: int64). The same sums in the
    same order as ``micro`` on those rows packed. An implicit GEMM's B rows are runs of
    a padded image (``conv_gemm``), read in place instead of packed."""
    return types.void(c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add), _offs_codegen(MR)


@intrinsic
def micro_offs6(typingctx, c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add):
    """``micro_offs`` over the first 6 rows of the A panel (rows 6 and 7 of c untouched):
    a last tile of 5 or 6 rows without the work of 8."""
    return types.void(c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add), _offs_codegen(6)


@intrinsic
def micro_offs4(typingctx, c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add):
    """``micro_offs`` over the first 4 rows of the A panel: a last tile of up to 4 rows."""
    return types.void(c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add), _offs_codegen(4)


@inline
def micro_offs_rows(rows, c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add):
    """``micro_offs`` of a tile whose first ``rows`` rows (1 to MR) are wanted, on as few
    rows of the micro-kernel as compute them: 4, 6 or MR (the same sums; the rows past
    those in c untouched)."""
    if rows <= 4:
        micro_offs4(c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add)
    elif rows <= 6:
        micro_offs6(c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add)
    else:
        micro_offs(c, c_off, ldc, ap, a_off, b, b_off, offs, o_off, kc, add)


def _gather_codegen(vectors):
    """The codegen of ``micro_gather`` over panels of ``vectors`` vectors (NV: NR columns)."""
    def codegen(context, builder, signature, args):
        c, c_off, ldc, a, rows, r_off, cols, k_off, bp, b_off, kc, add = args
        fty = context.get_value_type(signature.args[0].dtype)
        i64, W = ir.IntType(64), 64 // _bytes(fty)
        cb = _data(context, builder, signature.args[0], c, c_off)
        ab = _data(context, builder, signature.args[3], a, ir.Constant(i64, 0))
        rb = _data(context, builder, signature.args[4], rows, r_off)
        kb = _data(context, builder, signature.args[6], cols, k_off)
        bb = _data(context, builder, signature.args[8], bp, b_off)
        row = [builder.load(builder.gep(rb, [ir.Constant(i64, r)], inbounds=True)) for r in range(MR)]

        def a_scalar(k, r):  # (LLVM merges the MR loads of cols[k] into one)
            return builder.gep(ab, [builder.add(row[r], builder.load(builder.gep(kb, [k], inbounds=True)))],
                               inbounds=True)

        def b_vector(k, v):
            return _vector_at(builder, fty, bb, builder.add(builder.mul(k, ir.Constant(i64, vectors * W)),
                                                            ir.Constant(i64, v * W)))

        _emit_micro(context, builder, fty, cb, ldc, a_scalar, b_vector, kc, add, vectors=vectors)
        return context.get_dummy_value()

    return codegen


@intrinsic
def micro_gather(typingctx, c, c_off, ldc, a, rows, r_off, cols, k_off, bp, b_off, kc, add):
    """``micro`` with A unpacked and gathered: A(r, k) = a's data[rows[r_off + r] +
    cols[k_off + k]] (rows, cols: int64; every such index in range). The same sums in
    the same order as ``micro`` on A packed. The weight gradient of a convolution reads
    its im2col matrix this way (row r: a kernel tap's offset in the padded image,
    column k: an output pixel's), straight from the image."""
    return types.void(c, c_off, ldc, a, rows, r_off, cols, k_off, bp, b_off, kc, add), _gather_codegen(NV)


@intrinsic
def micro_gather1(typingctx, c, c_off, ldc, a, rows, r_off, cols, k_off, bp, b_off, kc, add):
    """``micro_gather`` on one-vector panels: an MR x (64 bytes) tile (16 float32
    columns), B packed in panels that wide. For products of few columns (16 output
    channels), which an NR-column panel would pad to twice their work."""
    return types.void(c, c_off, ldc, a, rows, r_off, cols, k_off, bp, b_off, kc, add), _gather_codegen(1)


# the three rounds of an 8 x 8 transpose as two-vector shuffles (the unpack, pair and
# half-swap steps of the usual AVX transpose): round one pairs rows (0, 1), (2, 3) ...
_UNPACK = ((0, 8, 1, 9, 4, 12, 5, 13), (2, 10, 3, 11, 6, 14, 7, 15))
_PAIR = ((0, 1, 8, 9, 4, 5, 12, 13), (2, 3, 10, 11, 6, 7, 14, 15))
_HALF = ((0, 1, 2, 3, 8, 9, 10, 11), (4, 5, 6, 7, 12, 13, 14, 15))
_COLUMN = (0, 2, 1, 3, 4, 6, 5, 7)  # the column that each vector holds after them


@intrinsic
def transpose8(typingctx, dst, d_off, ld, src, s_off, lds):
    """dst.data[d_off + k*ld + r] = src.data[s_off + r*lds + k] for r, k < 8: eight
    rows of eight in vector registers, transposed by shuffles, stored as eight
    vectors (the caller keeps every index in range; no bounds checks)."""
    sig = types.void(dst, d_off, ld, src, s_off, lds)

    def codegen(context, builder, signature, args):
        d, d_off, ld, a, s_off, lds = args
        fty = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(fty)
        vty, i64, i32 = ir.VectorType(fty, 8), ir.IntType(64), ir.IntType(32)

        def at(arr, aty, off):
            data = cgutils.create_struct_proxy(aty)(context, builder, value=arr).data
            return builder.bitcast(builder.gep(data, [off], inbounds=True), vty.as_pointer())

        rows = [builder.load(at(a, signature.args[3], builder.add(s_off, builder.mul(lds, ir.Constant(i64, r)))),
                             align=size) for r in range(8)]
        for masks, stride in ((_UNPACK, 1), (_PAIR, 2), (_HALF, 4)):
            nxt = [None] * 8
            for g in range(0, 8, 2 * stride):
                for j in range(g, g + stride):  # pairs (j, j + stride) -> positions j, j + stride
                    x, y = rows[j], rows[j + stride]
                    lo, hi = (builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, 8), list(m))) for m in masks)
                    nxt[j], nxt[j + stride] = lo, hi
            rows = nxt
        for j, v in enumerate(rows):
            k = _COLUMN[j]
            builder.store(v, at(d, signature.args[0], builder.add(d_off, builder.mul(ld, ir.Constant(i64, k)))),
                          align=size)
        return context.get_dummy_value()

    return sig, codegen


@typed
@serial_kernel
def copy8(dst, ld, src, rows, kc):
    # dst[k*ld + r] = src[r, k] for r < rows <= 8, k < kc: a transposing copy. Whole
    # 8-row groups of unit-stride rows go 8 x 8 blocks at a time through vector
    # shuffles (``transpose8``); the rest element by element.
    k8 = kc // 8 * 8 if rows == 8 and src.strides[1] == src.itemsize else 0
    lds = src.strides[0] // src.itemsize
    for k in range(0, k8, 8):
        transpose8(dst, k * ld, ld, src, k, lds)
    for k in range(k8, kc if rows == 8 else 0):
        d = dst[k * ld:k * ld + 8]
        d[0], d[1], d[2], d[3] = src[0, k], src[1, k], src[2, k], src[3, k]
        d[4], d[5], d[6], d[7] = src[4, k], src[5, k], src[6, k], src[7, k]
    for r in range(rows if rows < 8 else 0):
        d = dst[r:]
        for k in range(kc):
            d[k * ld] = src[r, k]


@typed
@serial_kernel
def pack_a(ap, a, trans_a, i0, rows, k0, kc):
    # ap[p*MR*kc + k*MR + r] = op(a)[i0 + p*MR + r, k0 + k], zero rows past ``rows``.
    # (Loops index 1-D views from 0 so LLVM sees non-negative, unit-stride indices.)
    for p in range((rows + MR - 1) // MR):
        panel = ap[p * MR * kc:(p + 1) * MR * kc]
        i = i0 + p * MR
        valid = min(MR, rows - p * MR)
        if valid < MR:
            panel[:] = 0
        if not trans_a:
            copy8(panel, MR, a[i:i + valid, k0:k0 + kc], valid, kc)
        for k in range(kc if trans_a else 0):
            src = a[k0 + k, i:i + valid]
            dst = panel[k * MR:(k + 1) * MR]
            for r in range(valid):
                dst[r] = src[r]
