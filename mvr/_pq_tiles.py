"""The inner step of the approximate MaxSim (:func:`mvr._approx.pq_scores`), written as
LLVM vector code.

One document token against ``LANES`` query tokens at once: its ``M`` code bytes each
select a row of ``LANES`` uint8 table entries (one per query token), which are summed
in ``LANES`` uint16 lanes; the sum is then scaled, the token's centroid similarities
and the tables' biases added, and the running max of the ``LANES`` query tokens
updated. The loop that numba compiled from the same code in plain Python (``for a in
range(p): tot[a] += lut8[m, code, a]`` with ``p`` known only at run time) stayed
scalar: ~600 ns per document token at 23 query tokens on a Zen 3 core, against ~210-245
ns for this one (``scripts/bench_approx_kernel.py``: 3,800 random candidates of a
PyPI-shaped 200,000-document table, 64 sub-quantizers, taken beside other jobs; 2.4-3.6x; BENCHMARKS.md
"Approximate MaxSim kernel"). What remains is the 64 table rows each token reads at
random from the query's 512 KB of tables.

The lane count is 32 on every host: ``<32 x i16>`` is one zmm register with AVX-512 and
two ymm with AVX2. A width that is not a power of two (24) was 20x slower in a probe
(LLVM splits it into narrow pieces), so queries are padded to multiples of 32, except
queries of at most 16 tokens, which take one 16-lane step (one ymm) over tables half
the size.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from mvr._maxsim_tiles import host_has_avx512

__all__ = ["LANES", "SHORT_LANES", "pq_token", "pq_token_short"]

#: Query tokens scored per step (the tables and similarities are padded to a multiple).
LANES = 32
#: The step of queries of at most this many tokens (PyPI's median is 14): half the tables.
SHORT_LANES = 16
_WIDE = host_has_avx512()


def _make_step(lanes: int, wide: bool) -> Any:
    """A numba intrinsic ``pq_token(lut, codes, m_count, stride, st, bias, scale, acc)``
    (addresses and counts as ints): with ``lut`` the uint8 tables of one block of
    ``lanes`` query tokens (entry ``(m, c)`` at ``lut + (m * 256 + c) * stride``),
    ``codes`` the token's ``m_count`` code bytes, and ``st``, ``bias``, ``scale``,
    ``acc`` arrays of ``lanes`` float32: ``acc = max(acc, st + bias + scale * tot)``
    with ``tot[l] = sum_m lut[m, codes[m], l]`` in uint16 (exact up to 257 codes)."""

    @intrinsic
    def pq_token(typingctx, lut_addr, code_addr, m_count, stride, st_addr, bias_addr,  # type: ignore[no-untyped-def]  # pragma: no cover
                 scale_addr, acc_addr):
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            la, ca, mc, stp, sa, ba, sca, aa = args
            if wide:  # as in mvr._maxsim_tiles: LLVM prefers 256-bit vectors otherwise
                attrs = builder.function.attributes
                set.add(attrs, '"prefer-vector-width"="512"')
                set.add(attrs, '"min-legal-vector-width"="512"')
            i8, i16, i64, f32 = ir.IntType(8), ir.IntType(16), ir.IntType(64), ir.FloatType()
            v8, v16, vf = (ir.VectorType(i8, lanes), ir.VectorType(i16, lanes),
                           ir.VectorType(f32, lanes))
            cp = builder.inttoptr(ca, i8.as_pointer())
            lp = builder.inttoptr(la, i8.as_pointer())
            zero = ir.Constant(v16, [0] * lanes)
            entry = builder.block
            loop = builder.append_basic_block("pq.loop")
            done = builder.append_basic_block("pq.done")
            builder.cbranch(builder.icmp_signed(">", mc, ir.Constant(i64, 0)), loop, done)
            builder.position_at_end(loop)
            m = builder.phi(i64)
            m.add_incoming(ir.Constant(i64, 0), entry)
            tot = builder.phi(v16)
            tot.add_incoming(zero, entry)
            code = builder.zext(builder.load(builder.gep(cp, [m])), i64)
            off = builder.mul(builder.add(builder.mul(m, ir.Constant(i64, 256)), code), stp)
            row = builder.load(builder.bitcast(builder.gep(lp, [off]), v8.as_pointer()), align=1)
            new = builder.add(tot, builder.zext(row, v16))
            m_next = builder.add(m, ir.Constant(i64, 1))
            tail = builder.block
            m.add_incoming(m_next, tail)
            tot.add_incoming(new, tail)
            builder.cbranch(builder.icmp_signed("<", m_next, mc), loop, done)
            builder.position_at_end(done)
            total = builder.phi(v16)
            total.add_incoming(zero, entry)
            total.add_incoming(new, tail)

            def load(addr: Any) -> Any:
                return builder.load(builder.inttoptr(addr, vf.as_pointer()), align=4)

            sim = builder.fadd(builder.fadd(load(sa), load(ba)),
                               builder.fmul(load(sca), builder.uitofp(total, vf)))
            acc_ptr = builder.inttoptr(aa, vf.as_pointer())
            acc = builder.load(acc_ptr, align=4)
            builder.store(builder.select(builder.fcmp_ordered(">", sim, acc), sim, acc), acc_ptr,
                          align=4)
            return context.get_dummy_value()

        return types.void(*[types.intp] * 8), codegen

    return pq_token


pq_token = _make_step(LANES, _WIDE)
pq_token_short = _make_step(SHORT_LANES, False)
