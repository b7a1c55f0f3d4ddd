"""Register tiles of the MaxSim kernel (:mod:`mvr._maxsim`), written as LLVM vector code.

A tile scores ``R`` document rows against ``L`` query rows ("lanes") at once: the
query rows are held transposed, ``qt`` of shape (dim, L), so that for each coordinate
``k`` one vector load of ``qt[k]`` and ``R`` broadcasts of ``x[r, k]`` feed ``R``
vector FMAs, ``acc[r] += x[r, k] * qt[k]``. After the ``dim`` steps ``acc[r]`` holds
the dot products of document row ``r`` with every lane, so the running max per query
row is an elementwise ``max`` of whole vectors: no horizontal sum, no shuffle, where
a tile vectorised over the dimension (the kernel before) ends every 4 x 3 tile with
12 horizontal sums.

The tiles are numba intrinsics that emit ``<L x float>`` vector IR; LLVM splits it
into the host's registers. Their shape is picked for the host's vector registers at
import (numba compiles for the CPU it runs on): with AVX-512, 32 lanes (two zmm) x 8
rows (16 accumulators of the 32 registers); otherwise 24 lanes (three ymm) x 4 rows
(12 accumulators of the 16). LLVM prefers 256-bit vectors on Intel cores even where
AVX-512 is present, so on AVX-512 hosts the functions that hold a tile are marked
``"prefer-vector-width"="512"`` and ``"min-legal-vector-width"="512"``: the
attributes clang sets for code written with 512-bit intrinsics.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["LANES", "ROWS", "host_has_avx512", "tile_main", "tile_mid", "tile_one"]


def host_has_avx512() -> bool:
    """Whether numba compiles for a CPU with AVX-512F (its configured CPU features if
    set, ``NUMBA_CPU_FEATURES``, else the host's as LLVM detects them)."""
    from numba.core import config

    feats = getattr(config, "CPU_FEATURES", None)
    if feats is None:
        import llvmlite.binding as ll

        feats = ll.get_host_cpu_features().flatten()
    return "+avx512f" in str(feats).split(",")


_AVX512 = host_has_avx512()
#: Query rows per tile (vector lanes) and document rows per full tile.
LANES, ROWS = (32, 8) if _AVX512 else (24, 4)


def _make_tile(rows: int, lanes: int, wide: bool) -> Any:
    """A numba intrinsic ``tile(qt_addr, x_addr, dim, best_addr, pf_addr, pf_lines)``:
    with ``qt`` the (dim, lanes) float32 array at ``qt_addr``, ``x`` the (rows, dim)
    float32 rows at ``x_addr`` and ``best`` the ``lanes`` float32 at ``best_addr``:
    ``best[l] = max(best[l], max_r sum_k x[r, k] * qt[k, l])``, summing in k order.
    Every other step ``k`` (while ``k < 2 * pf_lines``) also prefetches the next of
    ``pf_lines`` 64-byte lines from ``pf_addr`` into L2: spread over the FMAs, the
    rows the next tiles need arrive while these run (a burst of prefetches between
    tiles stalls on the core's few outstanding misses)."""

    @intrinsic
    def tile(typingctx, qt_addr, x_addr, dim, best_addr, pf_addr, pf_lines):  # type: ignore[no-untyped-def]  # pragma: no cover
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            qa, xa, nk, ba, pa, pn = args
            if wide:  # string attributes: llvmlite's set of known names has none
                attrs = builder.function.attributes
                set.add(attrs, '"prefer-vector-width"="512"')
                set.add(attrs, '"min-legal-vector-width"="512"')
            f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
            vt = ir.VectorType(f32, lanes)
            qp = builder.inttoptr(qa, f32.as_pointer())
            xp = builder.inttoptr(xa, f32.as_pointer())
            bp = builder.inttoptr(ba, vt.as_pointer())
            zero = ir.Constant(vt, [0.0] * lanes)
            undef = ir.Constant(vt, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
            entry = builder.block
            loop = builder.append_basic_block("tile.loop")
            done = builder.append_basic_block("tile.done")
            builder.cbranch(builder.icmp_signed(">", nk, ir.Constant(i64, 0)), loop, done)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            k.add_incoming(ir.Constant(i64, 0), entry)
            acc = []
            for _ in range(rows):
                phi = builder.phi(vt)
                phi.add_incoming(zero, entry)
                acc.append(phi)
            # prefetch line k/2 of the range on even k below 2 * pf_lines
            do_pf = builder.and_(builder.icmp_signed("<", k, builder.shl(pn, ir.Constant(i64, 1))),
                                 builder.icmp_signed("==", builder.and_(k, ir.Constant(i64, 1)),
                                                     ir.Constant(i64, 0)))
            with builder.if_then(do_pf, likely=True):
                line = builder.add(pa, builder.mul(builder.ashr(k, ir.Constant(i64, 1)),
                                                   ir.Constant(i64, 64)))
                i8p = ir.IntType(8).as_pointer()
                pf_ty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
                pf_fn = cgutils.get_or_insert_function(builder.module, pf_ty, "llvm.prefetch.p0")
                builder.call(pf_fn, [builder.inttoptr(line, i8p), ir.Constant(i32, 0),
                                     ir.Constant(i32, 2), ir.Constant(i32, 1)])
            q_ptr = builder.gep(qp, [builder.mul(k, ir.Constant(i64, lanes))])
            qv = builder.load(builder.bitcast(q_ptr, vt.as_pointer()), align=4)
            new = []
            for r in range(rows):
                x_ptr = builder.gep(xp, [builder.add(builder.mul(ir.Constant(i64, r), nk), k)])
                xs = builder.insert_element(undef, builder.load(x_ptr, align=4),
                                            ir.Constant(i32, 0))
                xv = builder.shuffle_vector(xs, undef, splat)
                prod = builder.fmul(xv, qv, flags=("contract",))
                new.append(builder.fadd(acc[r], prod, flags=("contract",)))
            k_next = builder.add(k, ir.Constant(i64, 1))
            tail = builder.block
            k.add_incoming(k_next, tail)
            for r in range(rows):
                acc[r].add_incoming(new[r], tail)
            builder.cbranch(builder.icmp_signed("<", k_next, nk), loop, done)
            builder.position_at_end(done)
            outs = []
            for r in range(rows):  # phis first: LLVM wants them at the top of the block
                out = builder.phi(vt)
                out.add_incoming(zero, entry)
                out.add_incoming(new[r], tail)
                outs.append(out)
            m = builder.load(bp, align=4)
            for out in outs:
                m = builder.select(builder.fcmp_ordered(">", out, m), out, m)
            builder.store(m, bp, align=4)
            return context.get_dummy_value()

        return types.void(*[types.intp] * 6), codegen

    return tile


#: ``ROWS`` document rows; 4 rows (the tail of a chunk, on AVX-512); one row.
tile_main = _make_tile(ROWS, LANES, _AVX512)
tile_mid = _make_tile(4, LANES, _AVX512)
tile_one = _make_tile(1, LANES, _AVX512)
