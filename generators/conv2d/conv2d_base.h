// The algorithm the three convolution generators share: parameters, geometry,
// the blocked direct convolution, Winograd, and the GPU's NCHW direct
// convolution. The schedules live beside it: cpu_schedules.h, gpu_schedules.h.
//
// The CPU's direct convolution uses two repacked layouts: channels innermost
// for the operand that is broadcast, channels in blocks of B = 16 for the one
// that is a vector, so that the CPU schedule keeps a register tile of 16-float
// accumulator blocks, as many as the target's vector registers hold
// (VectorRegisters; ../shared/CPU_CALIBRATION.md). Forward and backward-data
// are the same blocked direct convolution (blocked_conv); backward-weights is
// the same product reduced over pixels instead of taps. The repacking happens
// inside the pipeline; the external layouts are NCHW (or NHWC, `layout`) and
// OIHW. The manual GPU schedule computes on NCHW directly (direct_conv_nchw).
//
// 3x3 stride-1 convolutions on the CPU run as Winograd F(m x m, 3x3) instead
// (struct Winograd): the same register tiles over 25 (or 16) channel products
// of transformed tiles, 2.0-2.7x faster than direct on resnet18's layers.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "../common.h"
#include "tiles.h"
#include "winograd.h"

namespace hlnet {

// How a convolution is computed (the `algorithm` GeneratorParam of all three).
// Auto: Winograd where it is eligible and the manual CPU schedule is in use,
// direct otherwise.
enum class ConvAlgorithm { Auto, Direct, Winograd };

// The caches the CPU schedules' chunks are sized for: Halide's target does
// not describe caches, so the small end of today's cores (docs/INTERNALS.md).
constexpr long kL2Bytes = 1024 * 1024;
constexpr long kL1Bytes = 32 * 1024;
constexpr long kL3Bytes = 8 * 1024 * 1024;  // the share of L3 a pass may count on

// Shape, geometry and the shared algorithm of the three conv pipelines.
template <typename T>
class Conv2dBase : public Generator<T> {
public:
    GeneratorParam<int> N{"N", 1}, CI{"CI", 1}, CO{"CO", 1}, H{"H", 1}, W{"W", 1};
    GeneratorParam<int> K{"K", 3}, S{"S", 1}, P{"P", 0};
    GeneratorParam<ConvAlgorithm> algorithm{"algorithm",
                                            ConvAlgorithm::Auto,
                                            {{"auto", ConvAlgorithm::Auto},
                                             {"direct", ConvAlgorithm::Direct},
                                             {"winograd", ConvAlgorithm::Winograd}}};
    // The activations' layout (common.h). NHWC lets the CPU schedules read and
    // write 16-channel vectors in place instead of repacking NCHW planes: on
    // resnet18's layers most passes 2-17% faster, the 1x1 ones up to 30%, a
    // few slower (docs/PERFORMANCE.md, 2026-12-07, evening).
    GeneratorParam<Layout> layout{"layout", Layout::NCHW, layout_names()};

protected:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"}, cb{"cb"}, kb{"kb"};
    Var kx{"kx"}, ky{"ky"}, ci{"ci"}, co{"co"};
    Var tx{"tx"}, ty{"ty"}, a{"a"}, b{"b"}, row{"row"};

    // Whether a stride-1 convolution with a (width, height) output runs as
    // Winograd. Auto takes it with the manual CPU schedule where it saves at
    // least half the multiplies (ragged last tiles count in full): every
    // resnet18 3x3 stride-1 layer at 96x96 (3x3 to 24x24, F(3x3), 3.2x fewer).
    // The GPU schedules and the autoschedulers get the direct convolution.
    bool use_winograd(int width, int height) {
        const bool eligible = K == 3 && S == 1;
        if (algorithm == ConvAlgorithm::Winograd) {
            if (!eligible) {
                std::fprintf(stderr, "conv2d: algorithm=winograd needs K=3 and S=1, got K=%d S=%d\n", int(K), int(S));
                std::exit(1);
            }
            return true;
        }
        if (algorithm == ConvAlgorithm::Direct || !eligible || gpu() || this->using_autoscheduler()) return false;
        const double direct = 9.0 * width * height;
        return direct >= 2 * winograd_multiplies(winograd_tile(width, height), width, height);
    }

    // Images per chunk of a CPU schedule that sweeps a chunk per block of
    // `weights` floats (direct, or Winograd's transformed ones) with
    // `positions` output pixels or Winograd tiles per image: enough positions
    // per chunk that the weights, read once per chunk, cost little: 32 while
    // they fit in L2, 128 beyond (each 64-byte line of them then feeds 128
    // vector FMAs). One image for direct convolutions at 12x12 and up; 16 for
    // the 3x3 outputs of the 256->512 layer, whose 4.7 MB of weights were read
    // from L3 for every image before.
    int weight_sweep_images(int weights, int positions) const {
        const int wanted = 4.0 * weights <= kL2Bytes ? 32 : 128;
        int images = 1;
        while (images < N && (images * positions < wanted || N % images)) images++;
        return images;
    }

    // The tiling of a Winograd convolution with a (width, height) output.
    void plan_winograd(Winograd &w, int in_channels, int out_channels, int width, int height) const {
        w.active = true;
        w.m = winograd_tile(width, height);
        w.alpha = w.m + 2;
        w.B = channel_block(out_channels);
        w.blocks = out_channels / w.B;
        w.tiles_x = (width + w.m - 1) / w.m;
        w.tiles_y = (height + w.m - 1) / w.m;
        const int weights = in_channels * out_channels * w.alpha * w.alpha;
        w.images = weight_sweep_images(weights, w.tiles_x * w.tiles_y);
        // Where the transformed weights fit in half of L2 (64 channels), a
        // chunk goes through in groups of tile rows of at most 64 KB of
        // transformed input, so that it and the products stay in L2 instead
        // of a whole image's (400 KB each at 24x24) passing through L3; the
        // weights are re-read from L2 per group. Measured on the EPYC: the
        // 64-channel 24x24 forward 22.9 -> 20.8 ms with one row (51 KB), 21.9
        // with two (docs/PERFORMANCE.md). Larger weights come from L3 and
        // want every tile of the chunk per sweep instead.
        const long row_bytes = 4L * w.tiles_x * w.alpha * w.alpha * in_channels;
        if (4L * weights <= kL2Bytes / 2 && w.tiles_x * w.tiles_y >= 4) {
            w.group_rows = 1;
            for (int g = 2; g <= w.tiles_y; g++) {
                if (w.tiles_y % g == 0 && g * row_bytes <= 64 * 1024) w.group_rows = g;
            }
        }
    }

    // V = B^T d B for the patch d at every tile of the padded, channels-last src.
    void define_winograd_input(Winograd &w, Func src) {
        std::vector<Expr> patch_row, rows;
        for (int i = 0; i < w.alpha; i++) patch_row.push_back(src(c, w.m * tx + i, w.m * ty + row, n));
        w.input_rows(c, tx, ty, n, a, row) = winograd_apply(w.matrices().bt, a, patch_row);
        for (int i = 0; i < w.alpha; i++) rows.push_back(w.input_rows(c, tx, ty, n, a, i));
        w.input(c, tx, ty, n, a, b) = winograd_apply(w.matrices().bt, b, rows);
    }

    // Y(cb, x, y, kb, n) = init + sum over (c, kx, ky) of
    //   weight(kx, ky, c, kb*B + cb) * src(c, x + kx, y + ky, n)
    // for a (width, height) output, by Winograd F(m x m, 3 x 3); src is channels
    // last and padded (any x, y readable), weight a 3x3 kernel (kx, ky, in, out).
    void define_winograd(Winograd &w, Func src, Func weight, Expr init, int in_channels, int out_channels, int width,
                         int height) {
        plan_winograd(w, in_channels, out_channels, width, height);
        const WinogradMatrices &t = w.matrices();
        w.weight_taps(cb, c, kx, ky, kb) = weight(kx, ky, c, kb * w.B + cb);
        std::vector<Expr> taps, rows;
        for (int i = 0; i < 3; i++) taps.push_back(w.weight_taps(cb, c, i, ky, kb));
        w.weight_rows(cb, c, ky, kb, a) = winograd_apply(t.g, a, taps);
        for (int i = 0; i < 3; i++) rows.push_back(w.weight_rows(cb, c, i, kb, a));
        w.weights(cb, c, kb, a, b) = winograd_apply(t.g, b, rows);
        define_winograd_input(w, src);

        w.r = RDom(0, in_channels, "r_winograd");
        w.product(cb, tx, ty, kb, n, a, b) = 0.0f;
        w.product(cb, tx, ty, kb, n, a, b) += w.weights(cb, w.r, kb, a, b) * w.input(w.r, tx, ty, n, a, b);

        std::vector<Expr> columns;
        for (int j = 0; j < w.alpha; j++) {
            std::vector<Expr> column;
            for (int i = 0; i < w.alpha; i++) column.push_back(w.product(cb, x / w.m, y / w.m, kb, n, i, j));
            columns.push_back(winograd_apply(t.at, x % w.m, column));
        }
        w.output(cb, x, y, kb, n) = init + winograd_apply(t.at, y % w.m, columns);
    }

    int WO() const { return window_out(W, K, S, P); }
    int HO() const { return window_out(H, K, S, P); }
    std::vector<int> input_shape() const { return {W, H, CI, N}; }
    std::vector<int> output_shape() const { return {WO(), HO(), CO, N}; }
    std::vector<int> weight_shape() const { return {K, K, CI, CO}; }
    bool channels_last() const { return layout == Layout::NHWC; }
    bool gpu() const { return this->get_target().has_gpu_feature(); }
    VectorRegisters registers() const { return vector_registers(this->get_target()); }

    // f(c, x + pad, y + pad, n) = t(x, y, c, n) inside the (width, height) image,
    // 0 outside: zero padding, with channels innermost.
    Func channels_last_padded(Func t, int width, int height, int pad, const char *name) const {
        Func f{name};
        Func ext = BoundaryConditions::constant_exterior(t, 0.0f, {{0, width}, {0, height}});
        f(c, x, y, n) = ext(x - pad, y - pad, c, n);
        return f;
    }

    // The input as the blocked convolutions read it: channels last, zero
    // padded, read at (x*stride + kx, y*stride + ky). For a 1x1 kernel the
    // stride is applied here instead (stride becomes 1), so that only the
    // pixels read are repacked: a quarter of them for the stride-2 shortcuts.
    Func input_source(Func input, int &stride) const {
        if (K == 1 && S > 1) {
            Func f{"input_strided"};
            Func ext = BoundaryConditions::constant_exterior(input, 0.0f, {{0, W}, {0, H}});
            f(c, x, y, n) = ext(x * S - P, y * S - P, c, n);
            stride = 1;
            return f;
        }
        stride = S;
        return channels_last_padded(input, W, H, P, "input_padded");
    }

    // t(x, y, kb*B + cb, n) as (cb, x, y, kb, n): channels in blocks of B, innermost.
    Func channel_blocked(Func t, int B, const char *name) const {
        Func f{name};
        f(cb, x, y, kb, n) = t(x, y, kb * B + cb, n);
        return f;
    }

    // The blocked direct convolution:
    //   acc(cb, x, y, kb, n) = init(kb*B + cb)
    //       + sum over (c, a, b) in r of weights(cb, c, a, b, kb) * src(c, x*stride + a + off_x, y*stride + b + off_y, n)
    // with src channels-last and padded, weights blocked over the output channels.
    Func blocked_conv(const char *name, Func src, Func weights, Expr init, RDom r, int stride, int off_x,
                      int off_y) const {
        Func acc{name};
        acc(cb, x, y, kb, n) = init;
        acc(cb, x, y, kb, n) += weights(cb, r.x, r.y, r.z, kb) *
                                src(r.x, x * stride + r.y + off_x, y * stride + r.z + off_y, n);
        return acc;
    }

    // The manual GPU schedules' algorithm: the direct convolution on NCHW,
    // with no repacked copy of the activations (only of the weights, which
    // are small):
    //   acc(x, y, co, n) = init(co) + sum over (ci, a, b) in r of
    //       wt(co, ci, a, b) * src(x*stride + a, y*stride + b, ci, n)
    // src is the zero-padded NCHW tensor (a boundary condition, inlined), wt
    // the weights with the output channels innermost.
    Func direct_conv_nchw(Func src, Func wt, Expr init, RDom r, int stride) const {
        Func acc{"acc"};
        acc(x, y, co, n) = init;
        acc(x, y, co, n) += wt(co, r.x, r.y, r.z) * src(x * stride + r.y, y * stride + r.z, r.x, n);
        return acc;
    }

    // t(x - pad, y - pad, c, n) inside the (width, height) image, 0 outside.
    Func padded_nchw(Func t, int width, int height, int pad, const char *name) const {
        Func f{name};
        Func ext = BoundaryConditions::constant_exterior(t, 0.0f, {{0, width}, {0, height}});
        f(x, y, c, n) = ext(x - pad, y - pad, c, n);
        return f;
    }

    // CPU schedules: conv2d/cpu_schedules.h
    void schedule_winograd_cpu(Winograd &w, Func out, Var ch, Func src, int in_channels, int width, int height);
    void schedule_winograd_input_cpu(Winograd &w, LoopLevel level, int in_channels);
    Var schedule_unblock_cpu(Func out, Var ch, Func tiles, int width, int height, int B, Var chunk, Var image);
    void schedule_repack_cpu(Func f, int channels);
    Func schedule_blocked_conv_cpu(Func acc, RDom r, Func consumer, Var consumer_n, int blocks, int width, int height,
                                   int images);

    // GPU schedules: conv2d/gpu_schedules.h
    void schedule_winograd_gpu(Winograd &w, Func src);
    void schedule_blocked_conv_gpu(Func acc, RDom r, Func consumer, int blocks, int width, Func src, int channels,
                                   int stride, int taps);
    void schedule_direct_conv_gpu(Func out, Var ch, Func acc, RDom r, Func wt, int channels, int width, int height,
                                  int batch);
};

}  // namespace hlnet

#include "cpu_schedules.h"
#include "gpu_schedules.h"
