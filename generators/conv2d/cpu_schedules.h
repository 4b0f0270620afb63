// CPU schedules of the convolution algorithm (conv2d_base.h): register tiles
// of 16-float channel blocks (tiles.h), images or chunks in parallel.
#pragma once

#include "conv2d_base.h"

namespace hlnet {

// CPU schedule of a Winograd convolution read by `out` (channel var ch),
// chunk by chunk of w.images images, the chunks in parallel: the input
// transform, the (m+2)^2 products one after another in register tiles (a
// block of a product's transformed weights stays in L1 while the tiles sweep
// the chunk), then the output transform, for the whole chunk or for a group
// of w.group_rows tile rows at a time. NCHW: the input is first repacked
// channels last, and the output transform fills channel blocks that are then
// copied into the NCHW planes. NHWC: the input transform reads the input in
// place (or a padded copy, where tile-row groups overlap) and the output
// transform writes `out` itself, a block's 16 channels being one contiguous
// vector in both.
template <typename T>
void Conv2dBase<T>::schedule_winograd_cpu(Winograd &w, Func out, Var ch, Func src, int in_channels, int width,
                                          int height) {
    Var no{"no"}, ni{"ni"};
    out.split(n, no, ni, w.images);
    Func transform = w.output;
    Var block_lane = cb, block = kb, chunk = no, image = n;
    if (channels_last()) {
        out.parallel(no);
        // Groups of tile rows overlap by two input rows: a padded copy of
        // the chunk's input (contiguous) instead of reading it in place. The
        // 64-channel 24x24 forward on AVX2, against NCHW: +0.5-1.4 ms in
        // place, -0.5-1.0 ms with the copy (AVX-512: -0.6-0.9, -0.6-1.1).
        if (w.group_rows) {
            src.compute_at(out, chunk);
            schedule_repack_cpu(src, in_channels);
        }
        transform = out;
        block_lane = Var("chi"), block = Var("cho"), image = ni;
        out.split(ch, block, block_lane, w.B);
    } else {
        schedule_unblock_cpu(out, ch, w.output, width, height, w.B, no, ni);
        src.compute_at(out, chunk);
        schedule_repack_cpu(src, in_channels);
        w.output.compute_at(out, chunk);
    }

    w.weights.compute_root().reorder(cb, a, b, c, kb).vectorize(cb).unroll(a).unroll(b).parallel(kb);
    // A channel's 9 taps (for 16 output channels: a strided gather each) and
    // its 15 row sums once for its 25 values: inlined, every value gathered
    // its taps again.
    w.weight_taps.compute_at(w.weights, c).vectorize(cb).unroll(kx).unroll(ky);
    w.weight_rows.compute_at(w.weights, c).vectorize(cb).unroll(ky).unroll(a);

    // The output transform, a group of tile rows (or the chunk) at a time;
    // the input transform and the products per group, where it reads them.
    Var xo{"xo"}, yo{"yo"}, xi{"xi"}, yi{"yi"}, group{"group"}, yg{"yg"};
    // (`out` itself cannot shift a last tile inwards where a side is shorter than one.)
    const TailStrategy tail = width < w.m || height < w.m ? TailStrategy::GuardWithIf : TailStrategy::Auto;
    transform.split(x, xo, xi, w.m, tail)
        .split(y, yo, yi, w.m, tail)
        .vectorize(block_lane)
        .unroll(xi)
        .unroll(yi);
    LoopLevel per_group(out, chunk);
    if (w.group_rows) {
        transform.split(yo, group, yg, w.group_rows).reorder(block_lane, xi, yi, xo, yg, block, group, image);
        per_group = LoopLevel(transform, group);
    } else {
        transform.reorder(block_lane, xi, yi, xo, yo, block, image);
    }
    schedule_winograd_input_cpu(w, per_group, in_channels);

    // Register tile over tiles (tx, ty), or over images where an image has
    // only a few tiles (the 3x3 layers: one).
    w.product_tiles = w.product.in();
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

// The input transform, computed at `level` (a chunk, a group or a row of
// products): a block of 16 channels of a tile at a time, its 25 row sums in
// registers (or L1), its 25 values stored next to each other. Stored in
// (a, b) planes instead, the 25 stores went to streams a multiple of 4 KB
// apart (one L1 set: 64 KB at 128 channels), and computing one (a, b) value
// over all channels before the next loaded every patch value 3 times. EPYC
// (Zen 5): the twelve 3x3 passes 4-9% faster with AVX-512 and 3% with AVX2,
// the step 4% and 4.5% (docs/PERFORMANCE.md).
template <typename T>
void Conv2dBase<T>::schedule_winograd_input_cpu(Winograd &w, LoopLevel level, int in_channels) {
    const int lanes = channel_block(in_channels);
    if (lanes < 4) {
        w.input.compute_at(level).reorder(c, a, b, tx, ty, n).unroll(a).unroll(b);
        w.input_rows.compute_at(w.input, tx).reorder(c, a, row, tx, ty, n).unroll(a).unroll(row);
        return;
    }
    Var co{"co"}, ci{"ci"};
    w.input.compute_at(level)
        .split(c, co, ci, lanes)
        .reorder(ci, a, b, co, tx, ty, n)
        .vectorize(ci)
        .unroll(a)
        .unroll(b)
        .reorder_storage(c, a, b, tx, ty, n);
    w.input_rows.compute_at(w.input, co).vectorize(c).unroll(a).unroll(row);
}

// CPU schedule of the result `out` (channel var ch) read out of the
// channel-blocked `tiles` (undefined where `out` interleaves several), chunks
// of images in parallel (the caller split n into chunk and image). NHWC: a
// vector copy of B channels at a time. NCHW: with whole blocks of 16
// channels, a 16-channel x `vx`-pixel square is loaded as vectors along
// channels and stored as vectors along x, transposed in registers; where rows
// are too short for that (6x6, 3x3) the whole plane is the vector; otherwise
// vectors along x (or the plane) with strided loads. (Scalar, this copy took
// two thirds of the 7x7 stem.) Returns the parallel loop, at which per-chunk
// producers are computed.
template <typename T>
Var Conv2dBase<T>::schedule_unblock_cpu(Func out, Var ch, Func tiles, int width, int height, int B, Var chunk,
                                        Var image) {
    out.parallel(chunk);
    if (channels_last()) {
        Var cho{"cho"}, chi{"chi"};
        out.split(ch, cho, chi, B).reorder(chi, cho, x, y, image).vectorize(chi);
        return chunk;
    }
    const int vx = channel_block(width);
    const bool small_plane = vx < 4 && width * height <= 64;  // rows too short for vectors: 6x6, 3x3
    Var cho{"cho"}, chi{"chi"}, p{"p"};
    if (tiles.defined() && B == 16 && vx >= 4) {
        Var xo{"xo"}, xi{"xi"};
        out.split(x, xo, xi, vx)
            .split(ch, cho, chi, B)
            .reorder(xi, chi, xo, y, cho, image)
            .vectorize(xi)
            .unroll(chi);
        tiles.in(out).compute_at(out, xo).vectorize(cb).unroll(x);
    } else if (tiles.defined() && B == 16 && small_plane) {
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
