// The CPU register tiles (generators/conv2d/tiles.h, docs/INTERNALS.md "CPU
// register tiles"): derived from the target's register file, never more
// registers than it has, and the documented tiles at ResNet-18's shapes.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <vector>

#include "conv2d/tiles.h"

using hlnet::VectorRegisters;

namespace {

// Registers a tile needs, counted here independently of VectorRegisters:
// each 16-float block takes 16 / lanes registers; a broadcast takes one.
int block_registers(const VectorRegisters &r) { return r.lanes >= 16 ? 1 : 16 / r.lanes; }
int registers_needed(int accumulator_blocks, int operand_blocks, const VectorRegisters &r) {
    return (accumulator_blocks + operand_blocks) * block_registers(r) + 1;
}

struct Isa {
    const char *name, *target;
    int count, lanes;
};
const Isa isas[] = {
    {"AVX-512", "x86-64-linux-avx-avx2-f16c-fma-sse41-avx512-avx512_skylake", 32, 16},
    {"AVX2", "x86-64-linux-avx-avx2-f16c-fma-sse41", 16, 8},
    {"NEON", "arm-64-linux", 32, 4},
};

// ResNet-18's convolutions at 96x96: output blocks of 16 channels, input
// channels, kernel, output plane.
struct Layer {
    int blocks, in_channels, k, width;
};
const Layer resnet18[] = {{4, 1, 7, 48},   {4, 64, 3, 24},   {8, 64, 3, 12},  {8, 64, 1, 12},   {8, 128, 3, 12},
                          {16, 128, 3, 6}, {16, 128, 1, 6},  {16, 256, 3, 6}, {32, 256, 3, 3},  {32, 256, 1, 3},
                          {32, 512, 3, 3}};

}  // namespace

TEST_CASE("tiles: the register file comes from the target") {
    for (const Isa &isa : isas) {
        INFO(isa.name);
        const VectorRegisters r = hlnet::vector_registers(Halide::Target(isa.target));
        CHECK(r.count == isa.count);
        CHECK(r.lanes == isa.lanes);
    }
}

TEST_CASE("tiles: no tile needs more registers than the target has, one spare") {
    for (const Isa &isa : isas) {
        const VectorRegisters r{isa.count, isa.lanes};
        for (const Layer &l : resnet18) {
            INFO(isa.name << ", " << l.blocks << " blocks, " << l.in_channels << " in, k" << l.k << ", " << l.width);
            const hlnet::RegisterTile t = hlnet::choose_tile(l.blocks, l.width, l.width, r, 16);
            const int accumulators = t.vo * t.tx * t.ty * t.tn;
            CHECK(registers_needed(accumulators, t.vo, r) <= isa.count - 1);
            // Two FMA pipes of latency 4 (Zen 4, Skylake-X, Neoverse) need
            // eight independent accumulator registers to stay busy.
            CHECK(accumulators * block_registers(r) >= 8);
            CHECK(l.blocks % t.vo == 0);
            CHECK(l.width % t.tx == 0);
            CHECK(l.width % t.ty == 0);
            CHECK(16 % t.tn == 0);
            for (int taps : {l.k, 1}) {  // direct, and Winograd's products (one tap)
                const auto g = hlnet::choose_weight_gradient_tile(l.blocks, l.in_channels, taps, r);
                CHECK(registers_needed(g.vo * g.tc * g.taps, g.vo, r) <= isa.count - 1);
                CHECK(l.blocks % g.vo == 0);
                CHECK(l.in_channels % g.tc == 0);
                CHECK(g.taps >= 1);
                CHECK(g.taps <= taps);
                const auto ragged = hlnet::choose_weight_gradient_tile(l.blocks, l.in_channels, taps, r, true);
                CHECK(registers_needed(ragged.vo * ragged.tc * ragged.taps, ragged.vo, r) <= isa.count - 1);
                CHECK(ragged.vo * ragged.tc * ragged.taps >= g.vo * g.tc * g.taps);  // never fewer chains
                CHECK(ragged.tc <= l.in_channels);
            }
        }
    }
}

TEST_CASE("tiles: the tiles docs/INTERNALS.md names") {
    const VectorRegisters avx512{32, 16}, avx2{16, 8};
    auto tile = [](hlnet::RegisterTile t) { return std::vector<int>{t.vo, t.tx, t.ty, t.tn}; };
    auto gradient = [](hlnet::WeightGradientTile t) { return std::vector<int>{t.vo, t.tc, t.taps}; };
    // Forward and backward-data at 12x12: 4 blocks x 2x3 pixels; AVX2 1 x 2x3.
    CHECK(tile(hlnet::choose_tile(8, 12, 12, avx512, 16)) == std::vector<int>{4, 2, 3, 1});
    CHECK(tile(hlnet::choose_tile(8, 12, 12, avx2, 16)) == std::vector<int>{1, 2, 3, 1});
    // A 3x3 plane: two images per tile, 1 x 1x3 x 2 on AVX2 (12 ymm chains, not 6).
    CHECK(tile(hlnet::choose_tile(32, 3, 3, avx2, 16)) == std::vector<int>{1, 1, 3, 2});
    CHECK(tile(hlnet::choose_tile(32, 3, 3, avx2, 1)) == std::vector<int>{1, 1, 3, 1});
    // Weight gradients: 4 x 2 channels x 3 taps and Winograd's 4 x 4; AVX2 1 x 2 x 3 and 1 x 4.
    CHECK(gradient(hlnet::choose_weight_gradient_tile(8, 128, 3, avx512)) == std::vector<int>{4, 2, 3});
    CHECK(gradient(hlnet::choose_weight_gradient_tile(16, 256, 1, avx512)) == std::vector<int>{4, 4, 1});
    CHECK(gradient(hlnet::choose_weight_gradient_tile(8, 128, 3, avx2)) == std::vector<int>{1, 2, 3});
    CHECK(gradient(hlnet::choose_weight_gradient_tile(16, 256, 1, avx2)) == std::vector<int>{1, 4, 1});
    // Ragged channel tiles (the single-chunk Winograd weight gradient) only
    // where whole ones keep just 8 accumulator registers: AVX2 1 x 6, not 1 x 4.
    CHECK(gradient(hlnet::choose_weight_gradient_tile(16, 256, 1, avx2, true)) == std::vector<int>{1, 6, 1});
    CHECK(gradient(hlnet::choose_weight_gradient_tile(32, 512, 1, avx2, true)) == std::vector<int>{1, 6, 1});
    CHECK(gradient(hlnet::choose_weight_gradient_tile(16, 256, 1, avx512, true)) == std::vector<int>{4, 4, 1});
    // The stem's 7 taps in two passes of 4 (+ 3) on both.
    CHECK(gradient(hlnet::choose_weight_gradient_tile(4, 1, 7, avx512)) == std::vector<int>{4, 1, 4});
    CHECK(gradient(hlnet::choose_weight_gradient_tile(4, 1, 7, avx2)) == std::vector<int>{1, 1, 4});
}
