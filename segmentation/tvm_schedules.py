"""Hand-written CPU schedules for M2U-Net's operators under TVM Relax (compile time only).

TVM 0.27's default CPU pipeline lowers every operator to naive scalar loops: no threads, no
SIMD. That is why untuned TVM ran ~16× slower than ONNX Runtime. Meta-schedule tuning would
search for schedules but crashes in this release, so this module gives every fused operator a
fixed schedule that is right for a MobileNetV2-style network on a multi-core SIMD CPU:

* convolutions (pointwise, depthwise, the 3×3 stem): output-channel × width register tiles,
  the innermost width loop vectorised, the outer loops parallel, the bias/ReLU6/residual
  epilogue computed in the same tile while it is hot, and the zero-padding of 3×3 kernels
  materialised per tile (inlining it puts a branch into the inner loop);
* the decoder's bilinear ×2 upsampling is lowered to integer-indexed 0.75/0.25 blends instead
  of the generic float-coordinate ``resize2d`` and scheduled with the two output
  parities unrolled so that all index arithmetic folds away;
* any other injective operator: outer loops fused and parallel;
* before all that, each decoder block's ``conv1x1(concat(upsample(a), skip))`` is split into
  ``upsample(conv1x1(a)) + conv1x1(skip)`` (both linear, so exact): the convolution of the
  upsampled half runs at low resolution and the wide concatenation disappears.

Measured on a 2-core Zen 4 at 544² (sum of per-kernel minima, shared noisy machine): first
threads + SIMD tiles 253 ms; + integer ×2 upsampling and whole tiles for narrow layers 194 ms;
+ per-tile padding and unrolled upsampling parities 93 ms; + fused H·W for pointwise layers
81 ms. End to end the stock pipeline ran 1270 ms and these schedules 217 ms in the same
benchmark run (``benchmarks/RESULTS_backends.md``). Only the compiler imports this module;
the kiosk runtime never does.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir, te, tirx
from tvm.relax.transform.legalize_ops.image import _image_resize2d
from tvm.s_tir import dlight
from tvm.target.codegen import llvm_get_vector_width

#: Fewest float32 elements per width tile (two NEON vectors); wide-SIMD targets use more.
_MIN_WIDTH_TILE = 8
#: Output channels computed together in one register tile when the layer has many.
_CHANNEL_TILE = 8
#: Layers with at most this many output channels keep them all in one tile.
_SMALL_CHANNELS = 16


def _largest_divisor(n: int, candidates: tuple[int, ...]) -> int:
    return next((c for c in candidates if n % c == 0), 1)


def _upsample2x_te(x: te.Tensor) -> te.Tensor:
    """Bilinear ×2 (half-pixel centres, edge clamp) as 0.75/0.25 blends of two neighbours.

    For output index ``i`` the nearer source is ``i // 2`` and the farther one is the
    neighbour on the side of ``i`` (``i//2 - 1`` for even, ``i//2 + 1`` for odd ``i``),
    clamped at the border: exactly what ``resize2d(linear, half_pixel)`` computes at scale 2.
    """
    n, c, h, w = x.shape
    near, far = tirx.const(0.75, "float32"), tirx.const(0.25, "float32")

    def taps(i: tirx.PrimExpr, size: tirx.PrimExpr) -> tuple[tirx.PrimExpr, tirx.PrimExpr]:
        k = i // 2
        j = tirx.if_then_else(i % 2 == 0, k - 1, k + 1)
        return k, tirx.max(tirx.min(j, size - 1), 0)

    def value(b, ch, y, xx):
        ky, jy = taps(y, h)
        kx, jx = taps(xx, w)

        def row(r):
            return near * x[b, ch, r, kx] + far * x[b, ch, r, jx]

        return near * row(ky) + far * row(jy)

    return te.compute((n, c, h * 2, w * 2), value, name="upsample2x")


def legalize_resize2d(bb, call):
    """``LegalizeOps`` override: integer-indexed ×2 bilinear where it applies, else TVM's own."""
    attrs = call.attrs
    src, dst = call.args[0].ty.shape, call.ty.shape
    is_up2 = (
        str(attrs.method) == "linear"
        and str(attrs.coordinate_transformation_mode) == "half_pixel"
        and str(attrs.layout) == "NCHW"
        and len(src) == 4
        and all(isinstance(d, tirx.IntImm) for d in (*src, *dst))
        and int(dst[2]) == 2 * int(src[2])
        and int(dst[3]) == 2 * int(src[3])
    )
    if not is_up2:
        return _image_resize2d(bb, call)
    return bb.call_te(_upsample2x_te, call.args[0])


def _split_upsample_concat_pointwise(func):
    """Rewrite ``conv1x1(concat(upsample(a), b))`` as ``upsample(conv1x1(a)) + conv1x1(b)``.

    Every M2U-Net decoder block upsamples, concatenates a skip and applies a pointwise
    convolution. Bilinear upsampling and a 1×1 convolution are both linear, one per channel
    and one per pixel, so they commute. Splitting the weights by input channel lets the
    convolution of the upsampled half run at the *low* resolution, on 4× fewer pixels, and
    it never materialises the wide concatenated tensor (1 GB at full HRF size). ONNX Runtime
    does not do this. Exact up to float rounding (max |Δlogit| ~6e-6).
    """
    from tvm import relax
    from tvm.relax.dpl import is_const, is_op, is_tuple, rewrite_call, wildcard

    low, skip, size, weight = wildcard(), wildcard(), wildcard(), is_const()
    upsample = is_op("relax.image.resize2d")(low, size)
    concat = is_op("relax.concat")(is_tuple([upsample, skip]))
    conv = is_op("relax.nn.conv2d")(concat, weight)

    def rewrite(expr, matched):
        w = matched[weight].value.numpy()
        attrs = matched[conv].attrs
        pointwise = (
            w.shape[2:] == (1, 1)
            and list(attrs.strides) == [1, 1]
            and not any(int(p) for p in attrs.padding)
            and int(attrs.groups) == 1
            and str(attrs.data_layout) == "NCHW"
            and int(matched[concat].attrs.axis) == 1
        )
        if not pointwise:
            return expr
        split = int(matched[low].ty.shape[1])
        w_low = relax.const(np.ascontiguousarray(w[:, :split]))
        w_skip = relax.const(np.ascontiguousarray(w[:, split:]))
        resize = matched[upsample]
        low_conv = relax.Call(matched[conv].op, [matched[low], w_low], attrs)
        return relax.op.add(
            relax.Call(resize.op, [low_conv, matched[size]], resize.attrs),
            relax.Call(matched[conv].op, [matched[skip], w_skip], attrs),
        )

    return rewrite_call(conv, rewrite, func)


@tvm.transform.module_pass(opt_level=0, name="SplitUpsampleConcatPointwise")
def split_upsample_concat_pointwise(mod, _ctx):
    """Module pass applying :func:`_split_upsample_concat_pointwise` to every Relax function."""
    from tvm import relax

    mod = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            mod[gv] = _split_upsample_concat_pointwise(func)
    return mod


def _blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


def _has_branch(sch: s_tir.Schedule, block) -> bool:
    return "if_then_else" in str(sch.get(block).body)


class Conv2dTiles(dlight.ScheduleRule):
    """One convolution (plus its pad producer and elementwise epilogue) per fused function."""

    def apply(self, func, target, _tunable):  # noqa: D102 - dlight's interface
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        blocks = _blocks(sch)
        reductions = [b for b in blocks if _is_reduction(sch, b)]
        if len(reductions) != 1 or len(sch.get_loops(reductions[0])) != 7:
            return None
        conv = reductions[0]
        index = next(i for i, b in enumerate(blocks) if b.same_as(conv))
        producers, epilogue = blocks[:index], blocks[index + 1 :]
        tiled_producers = []
        for block in producers:
            if _has_branch(sch, block):
                tiled_producers.append(block)  # real zero-padding: materialise per tile
            else:
                sch.compute_inline(block)  # a plain copy (1×1 "padding")
        for block in epilogue[:-1]:
            sch.compute_inline(block)

        n, f, y, x, rc, *rk = sch.get_loops(conv)
        if all(int(sch.get(loop).extent) == 1 for loop in rk):
            # Pointwise: H and W are one contiguous axis, so small maps still fill a vector.
            x, y = sch.fuse(y, x), None
        channels, width = int(sch.get(f).extent), int(sch.get(x).extent)
        f_tile = (
            channels
            if channels <= _SMALL_CHANNELS
            else _largest_divisor(channels, (_CHANNEL_TILE, 4, 2))
        )
        lanes = max(_MIN_WIDTH_TILE, llvm_get_vector_width(target) // 32)
        x_tile = _largest_divisor(width, (lanes, 8, 4, 2))
        fo, fi = sch.split(f, [None, f_tile])
        xo, xi = sch.split(x, [None, x_tile])
        spatial = [n, fo] if y is None else [n, fo, y]
        sch.reorder(*spatial, xo, rc, *rk, fi, xi)
        outer = sch.fuse(*spatial)
        sch.parallel(outer)
        if epilogue:
            # A fused H·W tile is not a rectangle, so a pointwise epilogue goes per channel
            # tile; elsewhere it runs per width tile while the results are in cache.
            sch.reverse_compute_at(epilogue[-1], outer if y is None else xo)
        sch.unroll(fi)
        sch.vectorize(xi)
        sch.decompose_reduction(conv, rc)
        for block in tiled_producers:
            sch.compute_at(block, xo)
        return sch


class ParallelInjective(dlight.ScheduleRule):
    """Elementwise/copy functions (upsample + concat): inline producers, parallel outer loops."""

    def apply(self, func, target, _tunable):  # noqa: D102 - dlight's interface
        if not isinstance(func, tirx.PrimFunc):
            return None
        sch = s_tir.Schedule(func)
        blocks = _blocks(sch)
        if any(_is_reduction(sch, b) for b in blocks):
            return None
        upsample = any(sch.get(b).name_hint == "upsample2x" for b in blocks)
        for block in blocks[:-1]:
            sch.compute_inline(block)
        loops = sch.get_loops(blocks[-1])
        if upsample and len(loops) == 4:
            n, c, y, x = loops
            yo, yp = sch.split(y, [None, 2])
            xo, xp = sch.split(x, [None, 2])
            sch.reorder(n, c, yo, yp, xo, xp)
            sch.unroll(yp)
            sch.unroll(xp)
            sch.parallel(sch.fuse(n, c, yo))
        elif len(loops) > 1:
            sch.parallel(sch.fuse(*loops[:-1]))
        return sch


def schedule_passes() -> list[tvm.transform.Pass]:
    """The passes that replace TVM's naive CPU lowering (run under a ``with target`` scope)."""
    from tvm import relax

    return [
        split_upsample_concat_pointwise,
        relax.transform.LegalizeOps({"relax.image.resize2d": legalize_resize2d}),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        dlight.ApplyDefaultSchedule(Conv2dTiles(), ParallelInjective()),
    ]
