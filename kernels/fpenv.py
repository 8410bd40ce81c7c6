"""Flush-to-zero inside a compiled kernel, on x86: ``ftz_on()`` … ``ftz_restore(saved)``.

x86 cores run arithmetic whose inputs or result are subnormal (below 1.2e-38 in float32) through
slow microcode assists, up to ~100× slower per operation. A diverging or saturated network makes
them common (tiny sigmoid outputs times tiny gradients): per-sample SGD on MNIST at lr 0.01 and
momentum 0.99 ran its float32 epochs 1.67× as long without these bits as with them on an Intel
Xeon (bench/RESULTS.md, "The decay in closed form and flush-to-zero"). Setting the SSE control
register's FTZ and DAZ bits makes the core treat them as zero, what the kernels' explicit
flushes (``pieces.flush``) do for the values they store. The register is per thread: a kernel
sets it where it starts (each share of a call split by ``runtime.run_shares``, each block of a
parallel region) and restores the saved value before it returns, so the caller's thread, the
pool's and Numba's workers are left as they were. Elsewhere (not x86) both are no-ops and only
the explicit flushes apply.
These are inlined into kernels cached on disk, whose cache does not notice an edit here: clear
the kernels' ``__pycache__`` after changing this file.
"""

from __future__ import annotations

import platform

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
FTZ_DAZ = 0x8040  # MXCSR bit 15 (flush to zero) and bit 6 (denormals are zero)


def _mxcsr_call(builder, name: str, slot) -> None:
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def _mxcsr_get(typingctx):
    def codegen(context, builder, sig, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _mxcsr_set(typingctx, value):
    def codegen(context, builder, sig, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(args[0], slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.none(types.uint32), codegen


if X86:

    @numba.njit(inline="always")
    def ftz_on():
        """Set FTZ and DAZ on this thread; return the control register as it was."""
        saved = _mxcsr_get()
        _mxcsr_set(saved | numba.uint32(FTZ_DAZ))
        return saved

    @numba.njit(inline="always")
    def ftz_restore(saved):
        """Put back the control register ``ftz_on`` returned."""
        _mxcsr_set(saved)

    @numba.njit
    def control_register() -> int:
        """This thread's SSE control register (MXCSR), for tests."""
        return _mxcsr_get()

else:

    @numba.njit(inline="always")
    def ftz_on():
        """No-op where there is no x86 control register."""
        return numba.uint32(0)

    @numba.njit(inline="always")
    def ftz_restore(saved):
        """No-op where there is no x86 control register."""

    @numba.njit
    def control_register() -> int:
        """0 where there is no x86 control register."""
        return 0
