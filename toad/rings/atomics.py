"""Memory-order primitives and the byte copy of toad's compiled code (x86-64).

Host and engine are two processes on two CPUs sharing memory. On x86-64 (TSO) stores
become visible in program order and loads are not reordered with older loads, but
the *compiler* may reorder plain accesses, and a store followed by a load of another
location needs a full fence. So, in compiled code:

* a value that publishes others (a producer index, a phase word, a doorbell) is
  stored with :func:`store_release`: every store before it is visible first;
* a value written by the other side that guards others (a phase word, a producer or
  consumer index) is loaded with :func:`load_acquire`: nothing after it is read first;
* "store my flag, then load yours" (arming an interrupt, then re-checking the ring;
  ringing a doorbell, then reading "engine sleeping") has :func:`fence` between.

On x86-64 the first two are plain moves (they only bind the compiler); the fence is
a locked instruction. Another architecture would get the right instructions from the
same LLVM orderings.

:func:`cycles` reads the CPU's time-stamp counter (to time a copy inside a call;
toad checks that the TSC runs at a constant rate before it uses it, host/copy_timer.py).

:func:`copy_bytes` is LLVM's memcpy (glibc's memcpy at run time): a uint8 slice
assignment in compiled code is a byte loop, several times slower. Callers check
bounds; these primitives do not.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from toad.compiled import entry, kernel, loaded


def _item_pointer(context, builder, array_type, array, index, index_type):
    ary = context.make_array(array_type)(context, builder, array)
    position = context.cast(builder, index, index_type, types.intp)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [position],
                                    wraparound=False)


@intrinsic
def load_acquire(typingctx, array, index):
    """``array[index]`` loaded with acquire order (u32 or u64 arrays)."""
    signature = array.dtype(array, index)

    def codegen(context, builder, sig, args):
        pointer = _item_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load_atomic(pointer, "acquire", sig.args[0].dtype.bitwidth // 8)
    return signature, codegen


@intrinsic
def store_release(typingctx, array, index, value):
    """``array[index] = value`` stored with release order: it publishes the stores
    made before it."""
    signature = types.void(array, index, value)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        pointer = _item_pointer(context, builder, array_type, args[0], args[1], sig.args[1])
        stored = context.cast(builder, args[2], sig.args[2], array_type.dtype)
        builder.store_atomic(stored, pointer, "release", array_type.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return signature, codegen


@intrinsic
def fence(typingctx):
    """A sequentially consistent fence (a locked instruction on x86-64)."""
    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def copy_bytes(typingctx, dst, dst_at, src, src_at, count):
    """``dst[dst_at:dst_at+count] = src[src_at:src_at+count]`` as one memcpy (byte
    arrays or buffers; no bounds check: the caller's)."""
    signature = types.void(dst, dst_at, src, src_at, count)

    def codegen(context, builder, sig, args):
        dst_array = context.make_array(sig.args[0])(context, builder, args[0])
        src_array = context.make_array(sig.args[2])(context, builder, args[2])
        dst_pointer = builder.gep(dst_array.data, [context.cast(builder, args[1], sig.args[1], types.intp)])
        src_pointer = builder.gep(src_array.data, [context.cast(builder, args[3], sig.args[3], types.intp)])
        length = context.cast(builder, args[4], sig.args[4], types.intp)
        cgutils.raw_memcpy(builder, dst_pointer, src_pointer, length, 1)
        return context.get_dummy_value()
    return signature, codegen


@intrinsic
def address(typingctx, buffer):
    """The address of a buffer's (array's) first byte, as int64."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))
    return types.int64(buffer), codegen


@intrinsic
def byte_pointer(typingctx, address):
    """A uint8 pointer to ``address`` (an int64), for ``numba.carray``: compiled code
    reaching a mapping through the address its owner recorded. The owner keeps the
    mapping alive while the address is published, and bounds come with it."""
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], ir.PointerType(ir.IntType(8)))
    return types.CPointer(types.uint8)(address), codegen


@intrinsic
def pause(typingctx):
    """The spin-wait hint (x86 ``pause``): a polling loop yields the core's pipeline."""
    def codegen(context, builder, sig, args):
        hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                              "llvm.x86.sse2.pause")
        builder.call(hint, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def cycles(typingctx):
    """The time-stamp counter (``rdtsc`` on x86-64; not a serializing read)."""
    def codegen(context, builder, sig, args):
        read = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                              "llvm.readcyclecounter")
        return builder.call(read, [])
    return types.int64(), codegen


@kernel("void()")
def _full_fence():
    fence()


# A full memory barrier callable from Python, for slow paths that store a flag and
# then load the other side's (the engine going to sleep).
full_fence = entry(_full_fence)


@kernel("int64()")
def read_cycles():
    """The time-stamp counter, from Python (to relate it to the clock)."""
    return cycles()


loaded(__name__)
