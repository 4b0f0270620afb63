// GPU schedules of the convolution algorithm (conv2d_base.h): the NCHW
// direct convolution's register tiles (tiles.h), the blocked convolution's
// older schedule, and Winograd's flat one.
#pragma once

#include "conv2d_base.h"

namespace hlnet {

// GPU schedule of a Winograd convolution (only when asked for by
// algorithm=winograd; Auto picks direct on GPUs): every stage one flat kernel.
template <typename T>
void Conv2dBase<T>::schedule_winograd_gpu(Winograd &w, Func src) {
    schedule_flat_gpu(src, {c, x, y, n});
    schedule_flat_gpu(w.weights, {cb, c, kb, a, b});
    schedule_flat_gpu(w.input, {c, tx, ty, n, a, b});
    schedule_flat_gpu(w.product, {cb, tx, ty, kb, n, a, b});
    flat_gpu_loop(w.product.update(), {cb, tx, ty, kb, n, a, b});
    schedule_flat_gpu(w.output, {cb, x, y, kb, n});
}

// GPU schedule of a blocked convolution `acc` (reduction r) over a
// (width, height) grid of `blocks` channel blocks, read by `consumer`: one
// kernel. A thread owns one channel of a block (the 16 lanes of cb are
// adjacent threads, so weight loads and stores coalesce) and a register
// tile of `rx` pixels along x times `rk` channel blocks; threads also span
// the x tiles, blocks span (y, block groups, n). A block's input patch (all
// channels of the `taps` rows and the columns its pixels read from `src`)
// is staged in shared memory when it fits (every resnet18 layer's does),
// loaded by 16 threads over channels (contiguous in src: coalesced).
template <typename T>
void Conv2dBase<T>::schedule_blocked_conv_gpu(Func acc, RDom r, Func consumer, int blocks, int width, Func src,
                                              int channels, int stride, int taps) {
    const int rx = std::min(width, 4);
    int rk = 1;
    for (int v = 4; v >= 1; v--) {
        if (blocks % v == 0) {
            rk = v;
            break;
        }
    }
    Func tiles = acc.in(consumer);
    Var xo{"xo"}, xi{"xi"}, kbo{"kbo"}, kbi{"kbi"};
    tiles.compute_root()
        .split(x, xo, xi, rx, TailStrategy::RoundUp)  // internal: rounding up keeps every thread's tile whole
        .split(kb, kbo, kbi, rk)
        .reorder(xi, kbi, cb, xo, y, kbo, n)
        .unroll(xi)
        .unroll(kbi)
        .gpu_threads(cb, xo)
        .gpu_blocks(y, kbo, n);
    // At the innermost thread loop: the tile is one thread's registers.
    acc.compute_at(tiles, cb).unroll(x).unroll(kb);
    acc.update().reorder(x, kb, r.x, r.y, r.z, cb, y, n).unroll(x).unroll(kb);

    const int threads_x = (width + rx - 1) / rx;
    const long patch_bytes = 4L * channels * ((threads_x * rx - 1) * stride + taps) * taps;
    if (channels % 16 == 0 && patch_bytes <= 40 * 1024) {
        Var co_{"c_outer"}, ci_{"c_inner"};
        src.in(acc).compute_at(tiles, y).split(c, co_, ci_, 16).reorder(ci_, co_, x, y, n).gpu_threads(ci_);
    }
}

// GPU schedule of out(x, y, ch, n) = acc(x, y, ch, n) from direct_conv_nchw,
// as an implicit GEMM ([channels] x [pixels] x [ci * taps]) in the tiles of
// choose_gpu_tile: one kernel that reads and writes NCHW; each thread's
// accumulators are registers (acc computed inside the thread loops,
// unrolled), its weights one vector load, its inputs read through L1.
// wt is repacked once per call by a flat kernel.
template <typename T>
void Conv2dBase<T>::schedule_direct_conv_gpu(Func out, Var ch, Func acc, RDom r, Func wt, int channels, int width,
                                             int height, int batch) {
    const GpuConvTile t = choose_gpu_tile(channels, width, height, batch);
    Var kr{"kr"}, kt{"kt"}, kblk{"kblk"}, xr{"xr"}, xt{"xt"}, yt{"yt"}, yblk{"yblk"};
    Var nr{"nr"}, nt{"nt"}, nblk{"nblk"}, pix{"pix"};
    out.split(ch, kblk, kr, t.rc)
        .split(kblk, kblk, kt, t.tc)
        .split(n, nblk, nr, t.rn)
        .split(nblk, nblk, nt, t.tn)
        .split(x, xt, xr, t.rx)
        .split(y, yblk, yt, t.ty)
        .reorder(kr, xr, nr, xt, yt, nt, kt, yblk, nblk, kblk)
        .fuse(xt, yt, pix)
        .unroll(kr)
        .unroll(xr)
        .unroll(nr)
        .gpu_threads(pix, nt, kt)
        .gpu_blocks(yblk, nblk, kblk);
    // Channels innermost in storage too: the accumulator vectors stay whole registers.
    acc.compute_at(out, pix).reorder_storage(co, x, y, n).unroll(x).unroll(n);
    acc.update().reorder(co, x, y, n, r.y, r.z, r.x).unroll(x).unroll(n);
    if (t.rx == 1) acc.update().unroll(r.y);  // along x, the taps' overlapping windows would take registers
    // The zero padding as selects, not as loops split at the image border:
    // that split depends on the thread's pixel, so a warp diverged (ncu on
    // an H200, 3x3 layer: 10.7 of 32 threads active per warp).
    acc.update().never_partition_all();
    acc.never_partition_all();
    out.never_partition_all();
    // CUDA: the rc channels as one vector (paired loads of the weights).
    // OpenCL keeps them unrolled: its back end turns a vectorised local
    // array into one vector variable, and 32 lanes exceed OpenCL's 16.
    if (this->get_target().has_feature(Target::CUDA)) {
        acc.vectorize(co);
        acc.update().vectorize(co);
    } else {
        acc.unroll(co);
        acc.update().unroll(co);
    }
    schedule_flat_gpu(wt, {co, ci, kx, ky});
}

}  // namespace hlnet
