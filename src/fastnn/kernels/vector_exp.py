"""The attention's softmax loops over explicit 64-byte vectors, exp included.

Written as Python loops, these loops came out of LLVM in 32-byte vectors (its tuning
for AVX-512 CPUs prefers 256-bit vectors), behind run-time overlap checks with a
scalar fallback that calls ``floorf``; they took about as long as a block's two
products. Here they are emitted as LLVM IR over <16 x float> vectors, as the GEMM
micro-kernel is: one zmm register a vector where the CPU has AVX-512, two or four
narrower ones elsewhere (LLVM splits them), the same sums on every machine.

exp is Cephes' expf, as the scalar version it replaces: exp(x) = 2^n p(r) with
n = floor(x log2 e + 1/2), r = x - n ln 2 (in two parts), p a degree-7 polynomial
(1 + r + r^2 q(r)); 2^n built in the exponent bits. 0 for x <= -87 and for -inf, NaN
for NaN. float32 only: the float64 kernels keep ``math.exp``.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

W = 16  # float32 lanes in a 64-byte vector
G = 4  # vectors a row of ``online_cols`` takes at once: 64 columns, four independent chains

_CONST = dict(log2e=1.4426950408889634, ln2_hi=0.693359375, ln2_lo=-2.12194440e-4,
              p0=1.9875691500e-4, p1=1.3981999507e-3, p2=8.3334519073e-3, p3=4.1665795894e-2,
              p4=1.6666665459e-1, p5=5.0000001201e-1, low=-87.0, high=88.0, one=1.0, half=0.5, zero=0.0)
_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, W)
_I32, _I64 = ir.IntType(32), ir.IntType(64)


def _const(x):
    return ir.Constant(_VEC, [float(np.float32(x))] * W)


def _intrinsic_fn(builder, name, nargs):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * nargs),
                                          f"llvm.{name}.v{W}f32")


def _splat(builder, x, vty=_VEC):
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(_I32, W), [0] * W))


def emit_exp(builder, x):
    """exp of the <16 x float> ``x`` (see the module docstring)."""
    k = {name: _const(v) for name, v in _CONST.items()}
    fma = _intrinsic_fn(builder, "fma", 3)
    c = builder.call(_intrinsic_fn(builder, "minnum", 2),
                     [builder.call(_intrinsic_fn(builder, "maxnum", 2), [x, k["low"]]), k["high"]])
    n = builder.call(_intrinsic_fn(builder, "floor", 1), [builder.call(fma, [c, k["log2e"], k["half"]])])
    r = builder.call(fma, [builder.fneg(n), k["ln2_hi"], c])
    r = builder.call(fma, [builder.fneg(n), k["ln2_lo"], r])
    p = k["p0"]
    for name in ("p1", "p2", "p3", "p4", "p5"):
        p = builder.call(fma, [p, r, k[name]])
    p = builder.call(fma, [p, builder.fmul(r, r), builder.fadd(r, k["one"])])
    ity = ir.VectorType(_I32, W)
    bits = builder.shl(builder.add(builder.fptosi(n, ity), ir.Constant(ity, [127] * W)), ir.Constant(ity, [23] * W))
    y = builder.fmul(p, builder.bitcast(bits, _VEC))
    small = builder.select(builder.fcmp_ordered("==", x, x), k["zero"], x)  # x <= -87: 0, or NaN
    return builder.select(builder.fcmp_ordered(">", x, k["low"]), y, small)


def _vector(builder, base, offset):
    return builder.bitcast(builder.gep(base, [offset], inbounds=True), _VEC.as_pointer())


def _float32_arrays(*arrays):
    return all(isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C" for a in arrays)


@intrinsic
def online_cols(typingctx, st, m, lsum, alpha, bk):
    """One block of the forward's online softmax, down the columns of ``st`` (keys x
    queries: logits in, probabilities out), for the first ``bk`` rows; st's columns a
    multiple of 64, all C-contiguous float32. Per column c: m[c] (running max) grows to
    include the block, alpha[c] = exp(m_old - m_new) (the caller rescales its output by
    it), lsum[c] = lsum[c] * alpha[c] + sum_j st[j, c], st[j, c] <- exp(st[j, c] - m_new).
    A column whose logits are all -inf so far keeps m = -inf and subtracts 0, so its
    exps are 0, never NaN. Each column's sum runs over j in order."""
    if not (_float32_arrays(st, m, lsum, alpha) and st.ndim == 2 and isinstance(bk, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        st, m, lsum, alpha, bk = args
        bk = context.cast(builder, bk, signature.args[4], types.int64)
        sarr = context.make_array(signature.args[0])(context, builder, st)
        cols = cgutils.unpack_tuple(builder, sarr.shape, 2)[1]
        md, ld, ad = (context.make_array(t)(context, builder, a).data for t, a in zip(signature.args[1:4], args[1:4]))
        top = [cgutils.alloca_once(builder, _VEC) for _ in range(G)]
        acc = [cgutils.alloca_once(builder, _VEC) for _ in range(G)]
        ninf, zero = _const(float("-inf")), _const(0.0)
        with cgutils.for_range(builder, builder.udiv(cols, ir.Constant(_I64, G * W))) as group:
            c0 = [builder.add(builder.mul(group.index, ir.Constant(_I64, G * W)), ir.Constant(_I64, g * W))
                  for g in range(G)]
            old = [builder.load(_vector(builder, md, c), align=4) for c in c0]
            for g in range(G):
                builder.store(old[g], top[g])
            with cgutils.for_range(builder, bk) as row:
                base = builder.gep(sarr.data, [builder.mul(row.index, cols)], inbounds=True)
                for g in range(G):
                    x, cur = builder.load(_vector(builder, base, c0[g]), align=4), builder.load(top[g])
                    builder.store(builder.select(builder.fcmp_ordered(">", x, cur), x, cur), top[g])
            shift = []
            for g in range(G):
                new = builder.load(top[g])
                shift.append(builder.select(builder.fcmp_ordered(">", new, ninf), new, zero))
                a = emit_exp(builder, builder.fsub(old[g], shift[g]))
                builder.store(a, _vector(builder, ad, c0[g]), align=4)
                builder.store(builder.fmul(builder.load(_vector(builder, ld, c0[g]), align=4), a), acc[g])
                builder.store(new, _vector(builder, md, c0[g]), align=4)
            with cgutils.for_range(builder, bk) as row:
                base = builder.gep(sarr.data, [builder.mul(row.index, cols)], inbounds=True)
                for g in range(G):
                    p = _vector(builder, base, c0[g])
                    e = emit_exp(builder, builder.fsub(builder.load(p, align=4), shift[g]))
                    builder.store(e, p, align=4)
                    builder.store(builder.fadd(builder.load(acc[g]), e), acc[g])
            for g in range(G):
                builder.store(builder.load(acc[g]), _vector(builder, ld, c0[g]), align=4)
        return context.get_dummy_value()

    return types.void(st, m, lsum, alpha, bk), codegen


@intrinsic
def prob_row(typingctx, s, dp, r, a, shift, dl, scale, lim):
    """Row r of the backward's probability block: s[r, c] <- p = exp(s[r, c] * a - shift)
    and dp[r, c] <- p * (dp[r, c] - dl) * scale for c < lim; both 0 for lim <= c <
    s.shape[1] (a multiple of 16; s and dp C-contiguous float32 of one shape)."""
    if not (_float32_arrays(s, dp) and s.ndim == dp.ndim == 2 and isinstance(r, types.Integer)
            and isinstance(lim, types.Integer) and all(isinstance(t, types.Number) for t in (a, shift, dl, scale))):
        return None

    def codegen(context, builder, signature, args):
        s, dp, r, a, shift, dl, scale, lim = args
        r = context.cast(builder, r, signature.args[2], types.int64)
        sarr = context.make_array(signature.args[0])(context, builder, s)
        darr = context.make_array(signature.args[1])(context, builder, dp)
        cols = cgutils.unpack_tuple(builder, sarr.shape, 2)[1]
        sp = builder.gep(sarr.data, [builder.mul(r, cols)], inbounds=True)
        dpp = builder.gep(darr.data, [builder.mul(r, cols)], inbounds=True)
        conv = [context.cast(builder, v, t, types.float32) for v, t in zip((a, shift, dl, scale), signature.args[3:7])]
        av, shv, dlv, scv = (_splat(builder, v) for v in conv)
        ity = ir.VectorType(_I32, W)
        limv = _splat(builder, builder.trunc(context.cast(builder, lim, signature.args[7], types.int64), _I32), ity)
        iota = ir.Constant(ity, list(range(W)))
        fma, zero = _intrinsic_fn(builder, "fma", 3), _const(0.0)
        with cgutils.for_range(builder, builder.udiv(cols, ir.Constant(_I64, W))) as chunk:
            c0 = builder.mul(chunk.index, ir.Constant(_I64, W))
            keep = builder.icmp_signed("<", builder.add(iota, _splat(builder, builder.trunc(c0, _I32), ity)), limv)
            ps, pd = _vector(builder, sp, c0), _vector(builder, dpp, c0)
            p = emit_exp(builder, builder.call(fma, [builder.load(ps, align=4), av, builder.fneg(shv)]))
            p = builder.select(keep, p, zero)
            d = builder.fmul(builder.fmul(p, builder.fsub(builder.load(pd, align=4), dlv)), scv)
            builder.store(p, ps, align=4)
            builder.store(builder.select(keep, d, zero), pd, align=4)
        return context.get_dummy_value()

    return types.void(s, dp, r, a, shift, dl, scale, lim), codegen
