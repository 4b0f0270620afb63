// Register and thread tiles of the convolutions: sized from the target, not
// tuned for one machine (docs/INTERNALS.md, "CPU register tiles").
#pragma once

#include <algorithm>

#include "../common.h"

namespace hlnet {

// The CPU's vector register file, which sizes every register tile. The
// blocked layouts keep channels in blocks of 16 floats: one zmm on AVX-512, two
// ymm on AVX2, four q registers on NEON.
struct VectorRegisters {
    int count, lanes;
    int per_block() const { return std::max(1, 16 / lanes); }
    // Accumulator blocks that fit with room left for the operands (a quarter
    // of the file): 24 on AVX-512, 6 on AVX2 (16 ymm) and NEON (32 x 128-bit).
    int max_accumulators() const { return count * 3 / 4 / per_block(); }
    // Whether `accumulators` blocks, `operands` blocks loaded beside them and
    // a broadcast fit with one register spare, so that nothing spills.
    bool fits(int accumulators, int operands) const {
        return accumulators <= max_accumulators() && (accumulators + operands) * per_block() + 1 <= count - 1;
    }
    // What the tile rules minimise: loads per FMA counted in vector
    // instructions (a block is per_block() loads, a broadcast one), then
    // accumulator blocks left unused.
    double tile_cost(int block_loads, int broadcasts, int fma_blocks, int accumulators) const {
        return double(block_loads * per_block() + broadcasts) / (fma_blocks * per_block()) +
               0.01 * (max_accumulators() - accumulators);
    }
};

inline VectorRegisters vector_registers(const Target &t) {
    const int count = t.has_feature(Target::AVX512) || t.arch == Target::ARM ? 32 : 16;
    return {count, t.natural_vector_size<float>()};
}

// Register tile of a blocked convolution: `vo` blocks of output channels times
// `tx` x `ty` pixels of `tn` images (of the `images` a task holds), at most
// max_accumulators() blocks, with the vo weight blocks and a broadcast beside
// them. Images enter a tile only where they lower the cost: planes too small
// for enough accumulators. On AVX2 a 3x3 output plane held 1 x 1x3 blocks,
// six ymm chains where two FMA pipes of latency 4 need eight: 71% of the peak
// on the 256->512 stride-2 passes; 1 x 1x3 x 2 images keeps twelve.
struct RegisterTile {
    int vo, tx, ty, tn;
};

inline RegisterTile choose_tile(int blocks, int width, int height, const VectorRegisters &regs, int images = 1) {
    RegisterTile best{1, 1, 1, 1};
    double best_cost = 1e9;
    for (int tn = 1; tn <= std::min(images, 4); tn++) {
        if (images % tn) continue;
        for (int vo = 1; vo <= std::min(blocks, 8); vo++) {
            if (blocks % vo) continue;
            for (int tx = 1; tx <= std::min(width, 8); tx++) {
                if (width % tx) continue;
                for (int ty = 1; ty <= std::min(height, 4); ty++) {
                    if (height % ty) continue;
                    const int pixels = tx * ty * tn, acc = vo * pixels;
                    // Accumulators, weight blocks and a broadcast: on AVX-512,
                    // 24 + 8 spilled on the 512-channel 3x3 layer.
                    if (!regs.fits(acc, vo)) continue;
                    // vo weight blocks and `pixels` broadcasts per acc FMA
                    // blocks; ties to fewer weight loads, then fewer images.
                    // On AVX2, 1 block x 2 x 3 pixels (BLAS's 6 x 16 kernel)
                    // instead of 2 x 1 x 2: the stride-2 passes 8-10% faster.
                    const double cost = regs.tile_cost(vo, pixels, acc, acc);
                    if (cost < best_cost) best_cost = cost, best = {vo, tx, ty, tn};
                }
            }
        }
    }
    return best;
}

// Register tile of a weight gradient: `vo` blocks of output channels times
// `tc` input channels times `taps` kernel taps of a row (which share each
// d_output block), the vo d_output blocks and a broadcast of the input beside
// them; the fewest loads per FMA, as in choose_tile. A row of `row_taps`
// taps that does not fit is swept in passes of `taps` (the last one shorter).
// On AVX2 a tile of 2 x 1 x 3 blocks took 17 of the 16 ymm registers and ran
// at 40% of the FMA peak, and the stem's 7 taps (14 ymm accumulators) at 25%;
// Winograd's 2 x 2 (4 ymm loads and 2 broadcasts per 8 FMAs) took 23 ms where
// 1 x 4 (2 loads, 4 broadcasts) took 17 (docs/PERFORMANCE.md, AMD EPYC,
// 2026-12-05): loads counted in instructions, and the streamed d_output's
// loads cost more than the broadcasts, so a tie goes to the smaller vo.
struct WeightGradientTile {
    int vo, tc, taps;
};

// With `ragged_channels` (the Winograd weight gradient, whose last tile is
// cut to the channels left), tc need not divide the input channels where the
// whole-divisor tiles keep no more than the 8 accumulator registers two FMA
// pipes of latency 4 need: on AVX2 at 256 and 512 channels (split products),
// 1 x 6 (12 ymm) took 29.4 and 32.7 ms where 1 x 4 took 30.3 and 37.1; at 64
// and 128 channels (chunks) 5-6% less time; on AVX-512 the ragged 4 x 6
// (against 4 x 4, 16 zmm) was 2-4% slower.
inline WeightGradientTile choose_weight_gradient_tile(int blocks, int in_channels, int row_taps,
                                                      const VectorRegisters &regs, bool ragged_channels = false) {
    auto search = [&](bool ragged) {
        WeightGradientTile best{1, 1, 1};
        double best_cost = 1e9;
        for (int vo = 1; vo <= std::min(blocks, 4); vo++) {
            if (blocks % vo) continue;
            for (int tc = 1; tc <= in_channels; tc++) {
                if (in_channels % tc && !ragged) continue;
                // The ragged last tile overlaps the one before: computed twice.
                const double overlap = double((in_channels + tc - 1) / tc * tc) / in_channels;
                for (int passes = 1; passes <= row_taps; passes++) {
                    const int taps = (row_taps + passes - 1) / passes, acc = vo * tc * taps;
                    if (!regs.fits(acc, vo)) continue;
                    // The d_output blocks are loaded again in each pass.
                    const double cost =
                        overlap * regs.tile_cost(passes * vo, tc * row_taps, vo * tc * row_taps, acc);
                    if (cost < best_cost) best_cost = cost, best = {vo, tc, taps};  // ties: fewer d_output loads
                    break;  // more passes: only more loads
                }
            }
        }
        return best;
    };
    const WeightGradientTile whole = search(false);
    const int registers = whole.vo * whole.tc * whole.taps * regs.per_block();
    return ragged_channels && registers <= 8 ? search(true) : whole;
}

// GPU tile of a direct NCHW convolution with a (width, height) output of
// `channels` channels and `batch` images (schedule_direct_conv_gpu). A thread
// keeps rc output channels x rx pixels along x (or rn images where the width is
// not a multiple of 4: the 6x6 and 3x3 layers) in registers, and per step of
// the reduction loads rc weights (one vector, shared by the warp) and its
// inputs. The tile shrinks (channels first, to no fewer than 8 accumulators)
// while the launch would have fewer threads than an H100's 132 SMs hold (2048
// each). Measured on an H200 (commit 1b186fd, docs/PERFORMANCE.md): it took the
// 12x12 layer from 1.50 to 1.09 ms and left the 6x6 and 3x3 unchanged. A block
// spans xt x ty x tn pixel threads (whole rows, up to 36, several images where
// an image is smaller) times tc channel threads, up to 288 threads (9 warps);
// the batch is split further while the launch would have fewer than two
// blocks per SM.
struct GpuConvTile {
    int rc, rx, rn;  // per thread: channels, pixels along x, images
    int xt, ty, tn, tc;  // per block: threads along x, rows, image groups, channel groups
};

inline int largest_divisor(int n, int at_most) {
    for (int d = std::max(1, std::min(n, at_most)); d > 1; d--) {
        if (n % d == 0) return d;
    }
    return 1;
}

inline GpuConvTile choose_gpu_tile(int channels, int width, int height, int batch) {
    GpuConvTile t{};
    t.rc = channel_block(channels, 8);
    t.rx = width % 4 == 0 ? 4 : 1;
    t.rn = t.rx == 1 ? channel_block(batch, 4) : 1;
    // Pixels along x read overlapping input windows that take registers too:
    // 8 x 4 needed 72-96, over the 64 that Halide's CUDA runtime lets the
    // driver's JIT use (ncu: spills at 24x24), so at most 4 x 4 there.
    if (t.rx > 1) t.rc = std::min(t.rc, 4);
    const long outputs = long(channels) * width * height * batch, enough_threads = 132L * 2048;
    while (outputs / (t.rc * t.rx * t.rn) < enough_threads && t.rc * t.rx * t.rn > 8) {
        if (t.rc > 4 || (t.rc > 1 && t.rx * t.rn == 1)) t.rc /= 2;
        else if (t.rx > 1) t.rx /= 2;
        else t.rn /= 2;
    }
    t.xt = width / t.rx;
    t.ty = largest_divisor(height, std::max(1, 36 / t.xt));
    t.tn = largest_divisor(batch / t.rn, std::max(1, 36 / (t.xt * t.ty)));
    t.tc = largest_divisor(channels / t.rc, std::max(1, 288 / (t.xt * t.ty * t.tn)));
    auto blocks = [&] { return (height / t.ty) * (batch / (t.rn * t.tn)) * (channels / (t.rc * t.tc)); };
    while (blocks() < 2 * 132 && t.tn > 1) t.tn = largest_divisor(batch / t.rn, t.tn - 1);
    return t;
}

}  // namespace hlnet
