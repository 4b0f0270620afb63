// CPU schedules of the convolution algorithm (conv2d_base.h): register tiles
// of 16-float channel blocks (tiles.h), images or chunks in parallel.
#pragma once

#include "conv2d_base.h"

namespace hlnet {

// CPU schedule of a Winograd convolution read by `out` (NCHW, channel var
// ch), chunk by chunk of w.images images, the chunks in parallel: the input
// transform, the (m+2)^2 products one after another in register tiles (a
// block of a product's transformed weights stays in L1 while the tiles sweep
// the chunk), then the output transform, for the whole chunk or for a group
// of w.group_rows tile rows at a time; then the NCHW copy.
template <typename T>
void Conv2dBase<T>::schedule_winograd_cpu(Winograd &w, Func out, Var ch, Func src, int in_channels, int width,
                                          int height) {
    Var no{"no"}, ni{"ni"};
    out.split(n, no, ni, w.images);
    const Var chunk = schedule_unblock_cpu(out, ch, w.output, width, height, w.B, no, ni);
    src.compute_at(out, chunk);
    schedule_repack_cpu(src, in_channels);

    w.weights.compute_root().reorder(cb, a, b, c, kb).vectorize(cb).unroll(a).unroll(b).parallel(kb);

    // The output transform, a group of tile rows (or the chunk) at a time;
    // the input transform and the products per group, where it reads them.
    Var xo{"xo"}, yo{"yo"}, xi{"xi"}, yi{"yi"}, group{"group"}, yg{"yg"};
    w.output.compute_at(out, chunk)
        .split(x, xo, xi, w.m)
        .split(y, yo, yi, w.m)
        .vectorize(cb)
        .unroll(xi)
        .unroll(yi);
    LoopLevel per_group(out, chunk);
    if (w.group_rows) {
        w.output.split(yo, group, yg, w.group_rows).reorder(cb, xi, yi, xo, yg, kb, group, n);
        per_group = LoopLevel(w.output, group);
    } else {
        w.output.reorder(cb, xi, yi, xo, yo, kb, n);
    }
    schedule_winograd_input_cpu(w, per_group, in_channels);

    // Register tile over tiles (tx, ty), or over images where an image has
    // only a few tiles (the 3x3 layers: one).
    w.product_tiles = w.product.in(w.output);
    Var txo{"txo"}, tyo{"tyo"}, txi{"txi"}, tyi{"tyi"}, kbo{"kbo"}, kbi{"kbi"};
    if (w.tiles_x * w.tiles_y >= 4) {
        const RegisterTile t = choose_tile(w.blocks, w.tiles_x, w.group_rows ? w.group_rows : w.tiles_y, registers());
        w.product_tiles.compute_at(per_group)
            .split(tx, txo, txi, t.tx)
            .split(ty, tyo, tyi, t.ty)
            .split(kb, kbo, kbi, t.vo)
            .reorder(cb, kbi, txi, tyi, txo, tyo, n, kbo, a, b)
            .unroll(txi)
            .unroll(tyi);
        w.product.compute_at(w.product_tiles, txo).unroll(tx).unroll(ty);
        w.product.update().reorder(cb, kb, tx, ty, w.r, n, a, b).unroll(tx).unroll(ty);
    } else {
        const RegisterTile t = choose_tile(w.blocks, w.images, 1, registers());
        Var no_{"no"}, ni_{"ni"};
        w.product_tiles.compute_at(out, chunk)
            .split(n, no_, ni_, t.tx)
            .split(kb, kbo, kbi, t.vo)
            .reorder(cb, kbi, ni_, tx, ty, no_, kbo, a, b)
            .unroll(ni_);
        w.product.compute_at(w.product_tiles, no_).unroll(n);
        w.product.update().reorder(cb, kb, n, w.r, tx, ty, a, b).unroll(n);
    }
    w.product_tiles.vectorize(cb).unroll(kbi);
    w.product.vectorize(cb).unroll(kb);
    w.product.update().vectorize(cb).unroll(kb);
}

// The input transform, computed at `level` (a chunk or a group): all of a
// tile's values from one patch, 16 channels at a time.
template <typename T>
void Conv2dBase<T>::schedule_winograd_input_cpu(Winograd &w, LoopLevel level, int in_channels) {
    w.input.compute_at(level).reorder(c, a, b, tx, ty, n).unroll(a).unroll(b);
    w.input_rows.compute_at(w.input, tx).reorder(c, a, row, tx, ty, n).unroll(a).unroll(row);
    const int lanes = channel_block(in_channels);
    if (lanes >= 4) {
        w.input.vectorize(c, lanes);
        w.input_rows.vectorize(c, lanes);
    }
}

// CPU schedule of the NCHW result `out` (channel var ch) read out of the
// channel-blocked `tiles`, chunks of images in parallel (the caller split n
// into chunk and image). With whole blocks of 16 channels, a 16-channel x
// `vx`-pixel square is loaded as vectors along channels and stored as
// vectors along x, transposed in registers; where rows are too short for
// that (6x6, 3x3) the whole plane is the vector; otherwise vectors along x
// (or the plane) with strided loads. (Scalar, this copy took two thirds of
// the 7x7 stem.) Returns the parallel loop, at which per-chunk producers are
// computed.
template <typename T>
Var Conv2dBase<T>::schedule_unblock_cpu(Func out, Var ch, Func tiles, int width, int height, int B, Var chunk,
                                        Var image) {
    out.parallel(chunk);
    const int vx = channel_block(width);
    const bool small_plane = vx < 4 && width * height <= 64;  // rows too short for vectors: 6x6, 3x3
    Var cho{"cho"}, chi{"chi"}, p{"p"};
    if (B == 16 && vx >= 4) {
        Var xo{"xo"}, xi{"xi"};
        out.split(x, xo, xi, vx)
            .split(ch, cho, chi, B)
            .reorder(xi, chi, xo, y, cho, image)
            .vectorize(xi)
            .unroll(chi);
        tiles.in(out).compute_at(out, xo).vectorize(cb).unroll(x);
    } else if (B == 16 && small_plane) {
        // A block's whole plane, 16 channels x width*height pixels, is one
        // vector per channel of the dense NCHW plane, transposed from the
        // block's pixel vectors.
        out.fuse(x, y, p).split(ch, cho, chi, B).reorder(p, chi, cho, image).vectorize(p).unroll(chi);
        tiles.in(out).compute_at(out, cho).vectorize(cb).unroll(x).unroll(y);
    } else if (vx >= 4) {
        out.vectorize(x, vx);
    } else if (small_plane) {
        out.fuse(x, y, p).vectorize(p);
    }
    return chunk;
}

// CPU schedule of a channels-last repack with `channels` channels.
template <typename T>
void Conv2dBase<T>::schedule_repack_cpu(Func f, int channels) {
    if (channels % 16 == 0) f.vectorize(c, 16);
}

// CPU schedule of a blocked convolution `acc` (reduction r) of `blocks`
// channel blocks over a (width, height) grid, computed chunk by chunk of
// `images` images inside `consumer` (parallel over the chunks, consumer_n): a
// register tile per `choose_tile`, the blocks loop outermost so its weights
// stay in cache while the tiles sweep the chunk's images.
template <typename T>
Func Conv2dBase<T>::schedule_blocked_conv_cpu(Func acc, RDom r, Func consumer, Var consumer_n, int blocks, int width,
                                              int height, int images) {
    const RegisterTile t = choose_tile(blocks, width, height, registers(), images);
    Func tiles = acc.in(consumer);
    Var xo{"xo"}, yo{"yo"}, xi{"xi"}, yi{"yi"}, kbo{"kbo"}, kbi{"kbi"}, no{"no"}, ni{"ni"};
    tiles.compute_at(consumer, consumer_n)
        .split(x, xo, xi, t.tx)
        .split(y, yo, yi, t.ty)
        .split(n, no, ni, t.tn)
        .split(kb, kbo, kbi, t.vo)
        .reorder(cb, kbi, xi, yi, ni, xo, yo, no, kbo)
        .vectorize(cb)
        .unroll(kbi)
        .unroll(xi)
        .unroll(yi)
        .unroll(ni);
    acc.compute_at(tiles, xo).vectorize(cb).unroll(kb).unroll(x).unroll(y).unroll(n);
    acc.update()
        .reorder(cb, kb, x, y, n, r.x, r.y, r.z)
        .vectorize(cb)
        .unroll(kb)
        .unroll(x)
        .unroll(y)
        .unroll(n);
    return tiles;
}

}  // namespace hlnet
