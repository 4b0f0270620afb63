// 2-D convolution with bias, NCHW / OIHW, zero padding, any K, S, P:
// conv2d_forward, conv2d_backward_data, conv2d_backward_weights.
//
// All three share one geometry and two repacked layouts: channels innermost
// for the operand that is broadcast, channels in blocks of B = 16 for the one
// that is a vector, so that the CPU schedule keeps a register tile of 16-float
// accumulator blocks, as many as the target's vector registers hold
// (VectorRegisters; ../shared/CPU_CALIBRATION.md). Forward and backward-data are
// the same blocked direct convolution (blocked_conv); backward-weights is the
// same product reduced over pixels instead of taps. The repacking happens
// inside the pipeline; the external layouts stay NCHW / OIHW.
//
// 3x3 stride-1 convolutions on the CPU run as Winograd F(m x m, 3x3) instead
// (struct Winograd): the same register tiles over 25 (or 16) channel products
// of transformed tiles, 2.0-2.7x faster than direct on resnet18's layers.
#include <cstdio>
#include <cstdlib>

#include "common.h"

namespace hlnet {
namespace {

// The CPU's vector register file, which sizes every register tile. The
// blocked layouts keep channels in blocks of 16 floats: one zmm on AVX-512, two
// ymm on AVX2, four q registers on NEON.
struct VectorRegisters {
    int count, lanes;
    int per_block() const { return std::max(1, 16 / lanes); }
    // Accumulator blocks that fit with room left for the operands (a quarter
    // of the file): 24 on AVX-512, 6 on AVX2 (16 ymm) and NEON (32 x 128-bit).
    int max_accumulators() const { return count * 3 / 4 / per_block(); }
};

inline VectorRegisters vector_registers(const Target &t) {
    const int count = t.has_feature(Target::AVX512) || t.arch == Target::ARM ? 32 : 16;
    return {count, t.natural_vector_size<float>()};
}

// Register tile of a blocked convolution: `vo` blocks of output channels times
// `tx` x `ty` pixels, at most max_accumulators() blocks, with the vo weight
// blocks and a broadcast beside them.
struct RegisterTile {
    int vo, tx, ty;
};

inline RegisterTile choose_tile(int blocks, int width, int height, const VectorRegisters &regs) {
    const int max_acc = regs.max_accumulators();
    RegisterTile best{1, 1, 1};
    double best_cost = 1e9;
    for (int vo = 1; vo <= std::min(blocks, 8); vo++) {
        if (blocks % vo) continue;
        for (int tx = 1; tx <= std::min(width, 8); tx++) {
            if (width % tx) continue;
            for (int ty = 1; ty <= std::min(height, 4); ty++) {
                if (height % ty) continue;
                const int acc = vo * tx * ty;
                // Accumulators, weight blocks and a broadcast, one register spare:
                // on AVX-512, 24 + 8 spilled on the 512-channel 3x3 layer.
                if (acc > max_acc || (acc + vo) * regs.per_block() + 1 > regs.count - 1) continue;
                // Loads per FMA (vo weight vectors + tx*ty broadcasts), then fewer accumulators lost.
                const double cost = double(vo + tx * ty) / acc + 0.01 * (max_acc - acc);
                if (cost < best_cost) best_cost = cost, best = {vo, tx, ty};
            }
        }
    }
    return best;
}

// GPU tile of a direct NCHW convolution with a (width, height) output of
// `channels` channels and `batch` images (schedule_direct_conv_gpu). A thread
// keeps rc output channels x rx pixels along x (or rn images where the width is
// not a multiple of 4: the 6x6 and 3x3 layers) in registers, and per step of
// the reduction loads rc weights (one vector, shared by the warp) and its
// inputs. The tile shrinks (channels first, to no fewer than 8 accumulators)
// while the launch would have fewer threads than an H100's 132 SMs hold (2048
// each). Measured on an H200 (docs/PERFORMANCE.md): the shrinking took the
// 12x12 layer from 1.50 to 1.09 ms and left the 6x6 and 3x3 unchanged. A block
// spans xt x ty x tn pixel threads (whole rows, up to 36, several images where
// an image is smaller) times tc channel threads, up to 288 threads (9 warps);
// the batch is split further while the launch would have fewer than two
// blocks per SM.
struct GpuConvTile {
    int rc, rx, rn;  // per thread: channels, pixels along x, images
    int xt, ty, tn, tc;  // per block: threads along x, rows, image groups, channel groups
    int threads() const { return xt * ty * tn * tc; }
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

// How a convolution is computed (the `algorithm` GeneratorParam of all three).
// Auto: Winograd where it is eligible and the manual CPU schedule is in use,
// direct otherwise.
enum class ConvAlgorithm { Auto, Direct, Winograd };

// The three matrices of Winograd F(m, 3) (Lavin & Gray, 2016): an m-output
// tile of a 3-tap correlation is AT [(G g) . (BT d)] over an (m+2)-wide input
// patch d, and in 2-D AT [(G g G^T) . (BT d B)] A. F(2, 3) is Lavin's; F(3, 3)
// was derived by Toom-Cook at the points 0, 1, -1, 2 and infinity and checked
// exactly in rational arithmetic. Measured float32 error of one tile summed over
// 256 channels, against double (normwise, median of 20): F(2, 3) 4e-7, F(3, 3)
// 1.4e-6 (F(4, 3) would be 2.8e-6, up to 1.2e-5: not used).
struct WinogradMatrices {
    int m;                                  // outputs per tile and axis
    std::vector<std::vector<double>> bt;    // (m+2) x (m+2)
    std::vector<std::vector<double>> g;     // (m+2) x 3
    std::vector<std::vector<double>> at;    // m x (m+2)
};

inline const WinogradMatrices &winograd_matrices(int m) {
    static const WinogradMatrices f2{2,
                                     {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}},
                                     {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}},
                                     {{1, 1, 1, 0}, {0, 1, -1, -1}}};
    static const WinogradMatrices f3{
        3,
        {{2, -1, -2, 1, 0}, {0, -2, -1, 1, 0}, {0, 2, -3, 1, 0}, {0, -1, 0, 1, 0}, {0, 2, -1, -2, 1}},
        {{0.5, 0, 0}, {-0.5, -0.5, -0.5}, {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 6, 1.0 / 3, 2.0 / 3}, {0, 0, 1}},
        {{1, 1, 1, 1, 0}, {0, 1, -1, 2, 0}, {0, 1, 1, 4, 1}}};
    return m == 3 ? f3 : f2;
}

// Row `i` of matrix t applied to the values v: mux(i, {t[0] . v, t[1] . v, ...}),
// each product written without its zero terms and unit factors. With i a
// constant (an unrolled loop), only that row is left.
inline Expr winograd_apply(const std::vector<std::vector<double>> &t, Expr i, const std::vector<Expr> &v) {
    std::vector<Expr> rows;
    for (const auto &coefficients : t) {
        Expr sum;
        for (size_t k = 0; k < v.size(); k++) {
            const double c = coefficients[k];
            if (c == 0) continue;
            Expr term = c == 1 || c == -1 ? v[k] : float(std::fabs(c)) * v[k];
            sum = !sum.defined() ? (c < 0 ? -term : term) : (c < 0 ? sum - term : sum + term);
        }
        rows.push_back(sum.defined() ? sum : Expr(0.0f));
    }
    return rows.size() == 1 ? rows[0] : mux(i, rows);
}

inline std::vector<std::vector<double>> transposed(const std::vector<std::vector<double>> &t) {
    std::vector<std::vector<double>> r(t[0].size(), std::vector<double>(t.size()));
    for (size_t i = 0; i < t.size(); i++)
        for (size_t j = 0; j < t[i].size(); j++) r[j][i] = t[i][j];
    return r;
}

// A Winograd convolution F(m x m, 3 x 3) of a stride-1 3x3 kernel: each m x m
// output tile takes (m+2)^2 multiplies per channel pair where the direct
// convolution takes 9 m^2 (F(2x2): 16 against 36; F(3x3): 25 against 81). The
// channel sums are (m+2)^2 matrix products (output channels x input channels
// times input channels x tiles), computed in register tiles like the direct
// convolution's.
struct Winograd {
    bool active = false;
    int m = 2, alpha = 4;           // outputs per tile and axis; input patch width m+2
    int B = 1, blocks = 1;          // output channel block, and how many
    int tiles_x = 0, tiles_y = 0;   // m x m tiles over the output
    int images = 1;                 // images per chunk (the CPU schedule's task)
    RDom r;                         // input channels
    Func weights{"winograd_weights"};      // U(cb, c, kb, a, b) = G g G^T, channel-blocked
    Func input_rows{"winograd_input_rows"};  // B^T d along x: (c, tx, ty, n, a, row)
    Func input{"winograd_input"};          // V(c, tx, ty, n, a, b) = B^T d B
    Func product{"winograd_product"};      // M(cb, tx, ty, kb, n, a, b) = sum over c of U V
    Func output{"winograd_output"};        // Y(cb, x, y, kb, n) = init + A^T M A
    Func product_tiles;                    // M as the register tiles compute it
    const WinogradMatrices &matrices() const { return winograd_matrices(m); }
};

// Multiplies per channel pair of F(m x m, 3 x 3) over a (width, height) output.
inline double winograd_multiplies(int m, int width, int height) {
    return double((m + 2) * (m + 2)) * ((width + m - 1) / m) * ((height + m - 1) / m);
}
// The tile size with the fewest multiplies (the smaller on a tie).
inline int winograd_tile(int width, int height) {
    return winograd_multiplies(3, width, height) < winograd_multiplies(2, width, height) ? 3 : 2;
}

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

    // The tiling of a Winograd convolution with a (width, height) output.
    void plan_winograd(Winograd &w, int in_channels, int out_channels, int width, int height) const {
        w.active = true;
        w.m = winograd_tile(width, height);
        w.alpha = w.m + 2;
        w.B = channel_block(out_channels);
        w.blocks = out_channels / w.B;
        w.tiles_x = (width + w.m - 1) / w.m;
        w.tiles_y = (height + w.m - 1) / w.m;
        // Enough tiles per chunk that the transformed weights, read once per
        // chunk, cost little: 32 while they fit in L2, 128 beyond (each
        // 64-byte line of them then feeds 128 vector FMAs).
        const double weight_bytes = 4.0 * in_channels * out_channels * w.alpha * w.alpha;
        const int min_tiles = weight_bytes <= 1024 * 1024 ? 32 : 128;
        w.images = 1;
        while (w.images < N && (w.images * w.tiles_x * w.tiles_y < min_tiles || N % w.images)) w.images++;
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
        Func weight_rows{"winograd_weight_rows"};
        Expr o = kb * w.B + cb;
        weight_rows(cb, c, ky, kb, a) =
            winograd_apply(t.g, a, {weight(0, ky, c, o), weight(1, ky, c, o), weight(2, ky, c, o)});
        w.weights(cb, c, kb, a, b) = winograd_apply(
            t.g, b, {weight_rows(cb, c, 0, kb, a), weight_rows(cb, c, 1, kb, a), weight_rows(cb, c, 2, kb, a)});
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

    // CPU schedule of a Winograd convolution read by `out` (NCHW, channel var
    // ch), chunk by chunk of w.images images, the chunks in parallel: the
    // chunk's input transform, the (m+2)^2 products one after another in
    // register tiles (a block of a product's transformed weights stays in L1
    // while the tiles sweep the chunk), then the output transform and the
    // NCHW copy.
    void schedule_winograd_cpu(Winograd &w, Func out, Var ch, Func src, int in_channels, int width) {
        Var no{"no"}, ni{"ni"};
        out.split(n, no, ni, w.images);
        const Var chunk = schedule_unblock_cpu(out, ch, w.output, width, w.B, no, ni);
        src.compute_at(out, chunk);
        schedule_repack_cpu(src, in_channels);

        w.weights.compute_root().reorder(cb, a, b, c, kb).vectorize(cb).unroll(a).unroll(b).parallel(kb);

        schedule_winograd_input_cpu(w, LoopLevel(out, chunk), in_channels);

        // Register tile over tiles (tx, ty), or over images where an image has
        // only a few tiles (the 3x3 layers: one).
        w.product_tiles = w.product.in(w.output);
        Var txo{"txo"}, tyo{"tyo"}, txi{"txi"}, tyi{"tyi"}, kbo{"kbo"}, kbi{"kbi"};
        if (w.tiles_x * w.tiles_y >= 4) {
            const RegisterTile t = choose_tile(w.blocks, w.tiles_x, w.tiles_y, registers());
            w.product_tiles.compute_at(out, chunk)
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

        Var xo{"xo"}, yo{"yo"}, xi{"xi"}, yi{"yi"};
        w.output.compute_at(out, chunk)
            .split(x, xo, xi, w.m)
            .split(y, yo, yi, w.m)
            .reorder(cb, xi, yi, xo, yo, kb, n)
            .vectorize(cb)
            .unroll(xi)
            .unroll(yi);
    }

    // The input transform, computed at `level` (a chunk of images): all of a
    // tile's values from one patch, 16 channels at a time.
    void schedule_winograd_input_cpu(Winograd &w, LoopLevel level, int in_channels) {
        w.input.compute_at(level).reorder(c, a, b, tx, ty, n).unroll(a).unroll(b);
        w.input_rows.compute_at(w.input, tx).reorder(c, a, row, tx, ty, n).unroll(a).unroll(row);
        const int lanes = channel_block(in_channels);
        if (lanes >= 4) {
            w.input.vectorize(c, lanes);
            w.input_rows.vectorize(c, lanes);
        }
    }

    // GPU schedule of a Winograd convolution (only when asked for by
    // algorithm=winograd; Auto picks direct on GPUs): every stage one flat kernel.
    void schedule_winograd_gpu(Winograd &w, Func src) {
        schedule_flat_gpu(src, {c, x, y, n});
        schedule_flat_gpu(w.weights, {cb, c, kb, a, b});
        schedule_flat_gpu(w.input, {c, tx, ty, n, a, b});
        schedule_flat_gpu(w.product, {cb, tx, ty, kb, n, a, b});
        flat_gpu_loop(w.product.update(), {cb, tx, ty, kb, n, a, b});
        schedule_flat_gpu(w.output, {cb, x, y, kb, n});
    }

    int WO() const { return window_out(W, K, S, P); }
    int HO() const { return window_out(H, K, S, P); }
    std::vector<int> input_shape() const { return {W, H, CI, N}; }
    std::vector<int> output_shape() const { return {WO(), HO(), CO, N}; }
    std::vector<int> weight_shape() const { return {K, K, CI, CO}; }
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

    // CPU schedule of the NCHW result `out` (channel var ch) read out of the
    // channel-blocked `tiles`, images in parallel. With whole blocks of 16
    // channels, a 16-channel x `vx`-pixel square is loaded as vectors along
    // channels and stored as vectors along x, transposed in registers;
    // otherwise vectors along x with strided loads. (Scalar, this copy took
    // two thirds of the 7x7 stem.)
    // The images loop is n, or (chunk, image) where the caller split n in
    // chunks; returns the parallel loop, at which per-image (or per-chunk)
    // producers are computed.
    Var schedule_unblock_cpu(Func out, Var ch, Func tiles, int width, int B) {
        return schedule_unblock_cpu(out, ch, tiles, width, B, n, n);
    }
    Var schedule_unblock_cpu(Func out, Var ch, Func tiles, int width, int B, Var chunk, Var image) {
        out.parallel(chunk);
        const int vx = channel_block(width);
        if (B == 16 && vx >= 4) {
            Var xo{"xo"}, xi{"xi"}, cho{"cho"}, chi{"chi"};
            out.split(x, xo, xi, vx)
                .split(ch, cho, chi, B)
                .reorder(xi, chi, xo, y, cho, image)
                .vectorize(xi)
                .unroll(chi);
            tiles.in(out).compute_at(out, xo).vectorize(cb).unroll(x);
        } else if (vx >= 4) {
            out.vectorize(x, vx);
        }
        return chunk;
    }

    // CPU schedule of a channels-last repack with `channels` channels.
    void schedule_repack_cpu(Func f, int channels) {
        if (channels % 16 == 0) f.vectorize(c, 16);
    }

    // CPU schedule of a blocked convolution `acc` (reduction r) of `blocks`
    // channel blocks over a (width, height) grid, computed image by image inside
    // `consumer` (which is parallel over images): a register tile per
    // `choose_tile`, the blocks loop outermost so its weights stay in cache
    // while the tiles sweep the image.
    Func schedule_blocked_conv_cpu(Func acc, RDom r, Func consumer, Var consumer_n, int blocks, int width,
                                   int height) {
        const RegisterTile t = choose_tile(blocks, width, height, registers());
        Func tiles = acc.in(consumer);
        Var xo{"xo"}, yo{"yo"}, xi{"xi"}, yi{"yi"}, kbo{"kbo"}, kbi{"kbi"};
        tiles.compute_at(consumer, consumer_n)
            .split(x, xo, xi, t.tx)
            .split(y, yo, yi, t.ty)
            .split(kb, kbo, kbi, t.vo)
            .reorder(cb, kbi, xi, yi, xo, yo, kbo, n)
            .vectorize(cb)
            .unroll(kbi)
            .unroll(xi)
            .unroll(yi);
        acc.compute_at(tiles, xo).vectorize(cb).unroll(kb).unroll(x).unroll(y);
        acc.update()
            .reorder(cb, kb, x, y, r.x, r.y, r.z, n)
            .vectorize(cb)
            .unroll(kb)
            .unroll(x)
            .unroll(y);
        return tiles;
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
    void schedule_blocked_conv_gpu(Func acc, RDom r, Func consumer, int blocks, int width, Func src, int channels,
                                   int stride, int taps) {
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

    // GPU schedule of out(x, y, ch, n) = acc(x, y, ch, n) from direct_conv_nchw,
    // as an implicit GEMM ([channels] x [pixels] x [ci * taps]) in the tiles of
    // choose_gpu_tile: one kernel that reads and writes NCHW; each thread's
    // accumulators are registers (acc computed inside the thread loops,
    // unrolled), its weights one vector load, its inputs read through L1.
    // wt is repacked once per call by a flat kernel.
    void schedule_direct_conv_gpu(Func out, Var ch, Func acc, RDom r, Func wt, int channels, int width, int height,
                                  int batch) {
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
        acc.update().reorder(co, x, y, n, r.y, r.z, r.x).unroll(x).unroll(n).unroll(r.y);
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
};

// Forward: one blocked convolution over the padded input.
class Conv2dForward : public Conv2dBase<Conv2dForward> {
public:
    Input<Buffer<float, 4>> input{"input"};
    Input<Buffer<float, 4>> weight{"weight"};
    Input<Buffer<float, 1>> bias{"bias"};
    Output<Buffer<float, 4>> output{"output"};

    void generate() {
        B = channel_block(CO);
        if (use_winograd(WO(), HO())) {
            src = channels_last_padded(input, W, H, P, "input_padded");
            define_winograd(winograd, src, weight, bias(kb * B + cb), CI, CO, WO(), HO());
            output(x, y, co, n) = winograd.output(co % B, x, y, co / B, n);
            return;
        }
        if (gpu() && !using_autoscheduler()) {
            direct_gpu = true;
            src = padded_nchw(input, W, H, P, "input_padded");
            weights(co, ci, kx, ky) = weight(kx, ky, ci, co);
            r = RDom(0, CI, 0, K, 0, K, "r");  // (ci, kx, ky)
            acc = direct_conv_nchw(src, weights, bias(co), r, S);
            output(x, y, co, n) = acc(x, y, co, n);
            return;
        }
        src = input_source(input, stride);
        weights(cb, ci, kx, ky, kb) = weight(kx, ky, ci, kb * B + cb);
        r = RDom(0, CI, 0, K, 0, K, "r");  // (ci, kx, ky)
        acc = blocked_conv("acc", src, weights, bias(kb * B + cb), r, stride, 0, 0);
        output(x, y, co, n) = acc(co % B, x, y, co / B, n);
    }

    void schedule() {
        pin_shape(input, input_shape());
        pin_shape(weight, weight_shape());
        pin_shape(bias, {CO});
        pin_shape(output, output_shape());
        if (using_autoscheduler()) return;
        if (winograd.active) {
            if (gpu()) {
                schedule_flat_gpu(output, {x, y, co, n});
                schedule_winograd_gpu(winograd, src);
            } else {
                schedule_winograd_cpu(winograd, output, co, src, CI, WO());
            }
        } else if (direct_gpu) {
            schedule_direct_conv_gpu(output, co, acc, r, weights, CO, WO(), HO(), N);
        } else if (gpu()) {
            schedule_flat_gpu(output, {x, y, co, n});
            schedule_blocked_conv_gpu(acc, r, output, CO / B, WO(), src, CI, stride, K);
            schedule_flat_gpu(src, {c, x, y, n});
            schedule_flat_gpu(weights, {cb, ci, kx, ky, kb});
        } else {
            // Measured: see docs/PERFORMANCE.md.
            Func tiles = schedule_blocked_conv_cpu(acc, r, output, n, CO / B, WO(), HO());
            schedule_unblock_cpu(output, co, tiles, WO(), B);
            src.compute_at(output, n);
            schedule_repack_cpu(src, CI);
            weights.compute_root().parallel(kb);
        }
    }

private:
    int B = 1, stride = 1;
    bool direct_gpu = false;  // the manual GPU schedule's NCHW direct convolution
    RDom r;
    Func src, weights{"weights"}, acc;
    Winograd winograd;
};

// d_input(x) = sum over the taps k and output pixels o with o*S + k - P = x: a
// gather (gather_tap / gather_output in common.h). Split x into S phases
// x = S*xq + px: in phase px only the taps k = t + S*q (t = (px+P) mod S,
// k < K) line up with an output, o = xq + (px+P) div S - q. So each of the S*S phases is a stride-1 blocked convolution of
// d_output with a sub-kernel (flipped, channels transposed); d_input
// interleaves them. With S = 1 there is one phase: the usual flipped-kernel
// convolution.
class Conv2dBackwardData : public Conv2dBase<Conv2dBackwardData> {
public:
    Input<Buffer<float, 4>> d_output{"d_output"};
    Input<Buffer<float, 4>> weight{"weight"};
    Output<Buffer<float, 4>> d_input{"d_input"};

    void generate() {
        B = channel_block(CI);
        if (use_winograd(W, H)) {
            // With stride 1, d_input is the forward convolution of d_output
            // padded by K-1-P with the flipped kernel, its channels transposed.
            src = channels_last_padded(d_output, WO(), HO(), K - 1 - P, "d_output_padded");
            Func flipped{"flipped_weight"};
            flipped(kx, ky, co, ci) = weight(K - 1 - kx, K - 1 - ky, ci, co);
            define_winograd(winograd, src, flipped, 0.0f, CO, CI, W, H);
            d_input(x, y, ci, n) = winograd.output(ci % B, x, y, ci / B, n);
            return;
        }
        if (S == 1 && gpu() && !using_autoscheduler()) {
            // The flipped-kernel convolution of d_output padded by K-1-P, on NCHW.
            direct_gpu = true;
            src = padded_nchw(d_output, WO(), HO(), K - 1 - P, "d_output_padded");
            wt(co, ci, kx, ky) = weight(K - 1 - kx, K - 1 - ky, co, ci);  // co: d_input's channel
            r = RDom(0, CO, 0, K, 0, K, "r");                             // (layer's co, kx, ky)
            acc = direct_conv_nchw(src, wt, 0.0f, r, 1);
            d_input(x, y, ci, n) = acc(x, y, ci, n);
            return;
        }
        pad = K;  // any pad >= K keeps every phase's offset non-negative
        src = channels_last_padded(d_output, WO(), HO(), pad, "d_output_padded");
        std::vector<Expr> values;
        for (int py = 0; py < S; py++) {
            for (int px = 0; px < S; px++) {
                Phase ph;
                ph.tx = taps(px);
                ph.ty = taps(py);
                const std::string suffix = "_" + std::to_string(px) + std::to_string(py);
                if (ph.tx == 0 || ph.ty == 0) {
                    values.push_back(0.0f);  // no tap reaches this phase (K < S)
                } else {
                    // Flipped sub-kernel: a = tx-1-q reads tap gather_tap(p, q) = t + S*q.
                    const int t_x = gather_tap(px, 0, S, P), t_y = gather_tap(py, 0, S, P);
                    ph.weights = Func("weights" + suffix);
                    ph.weights(cb, co, kx, ky, kb) =
                        weight(t_x + S * (ph.tx - 1 - kx), t_y + S * (ph.ty - 1 - ky), kb * B + cb, co);
                    ph.r = RDom(0, CO, 0, ph.tx, 0, ph.ty, "r" + suffix);  // (co, a, b)
                    // o = xq + gather_output(p, q) = xq + a + gather_output(p, tx-1), read at o + pad.
                    const int off_x = gather_output(px, ph.tx - 1, S, P) + pad;
                    const int off_y = gather_output(py, ph.ty - 1, S, P) + pad;
                    ph.acc = blocked_conv(("acc" + suffix).c_str(), src, ph.weights, 0.0f, ph.r, 1, off_x, off_y);
                    values.push_back(ph.acc(ci % B, x / S, y / S, ci / B, n));
                }
                phases.push_back(ph);
            }
        }
        d_input(x, y, ci, n) = values.size() == 1 ? values[0] : mux((y % S) * S + x % S, values);
    }

    void schedule() {
        pin_shape(d_output, output_shape());
        pin_shape(weight, weight_shape());
        pin_shape(d_input, input_shape());
        if (using_autoscheduler()) return;
        if (winograd.active) {
            if (gpu()) {
                schedule_flat_gpu(d_input, {x, y, ci, n});
                schedule_winograd_gpu(winograd, src);
            } else {
                schedule_winograd_cpu(winograd, d_input, ci, src, CO, W);
            }
        } else if (direct_gpu) {
            schedule_direct_conv_gpu(d_input, ci, acc, r, wt, CI, W, H, N);
        } else if (gpu()) {
            schedule_flat_gpu(d_input, {x, y, ci, n});
            schedule_flat_gpu(src, {c, x, y, n});
            for (auto &ph : phases) {
                if (ph.weights.defined()) {
                    schedule_blocked_conv_gpu(ph.acc, ph.r, d_input, CI / B, (int(W) + S - 1) / S, src, CO, 1,
                                              std::max(ph.tx, ph.ty));
                    schedule_flat_gpu(ph.weights, {cb, co, kx, ky, kb});
                }
            }
        } else {
            src.compute_at(d_input, n);
            schedule_repack_cpu(src, CO);
            for (int py = 0; py < S; py++) {
                for (int px = 0; px < S; px++) {
                    Phase &ph = phases[py * S + px];
                    // Every phase is computed over the same grid, ceil(W/S) x ceil(H/S)
                    // (the mux reads them all at every x); the odd phases' extra column is unused.
                    const int width = (int(W) + S - 1) / S, height = (int(H) + S - 1) / S;
                    if (!ph.weights.defined()) continue;
                    ph.weights.compute_root().parallel(kb);
                    ph.tiles = schedule_blocked_conv_cpu(ph.acc, ph.r, d_input, n, CI / B, width, height);
                }
            }
            // Interleaved phases read strided from several tiles: no transpose.
            if (S == 1 && phases[0].tiles.defined()) {
                schedule_unblock_cpu(d_input, ci, phases[0].tiles, W, B);
            } else {
                schedule_unblock_cpu(d_input, ci, Func(), W, 0);
            }
        }
    }

private:
    struct Phase {
        int tx = 0, ty = 0;
        Func acc, weights, tiles;
        RDom r;
    };
    int taps(int phase) const {  // how many taps gather_tap(phase, q) are below K
        const int t = gather_tap(phase, 0, S, P);
        return t < K ? (K - t + S - 1) / S : 0;
    }
    int B = 1, pad = 0;
    bool direct_gpu = false;  // stride 1 on the manual GPU schedule: one NCHW direct convolution
    RDom r;
    Func src, acc, wt{"weights"};
    std::vector<Phase> phases;
    Winograd winograd;
};

// d_weight(kx, ky, ci, co) = sum over (n, oy, ox) of d_output(ox, oy, co, n) *
// input(ox*S + kx - P, oy*S + ky - P, ci, n): a blocked product of the
// channel-blocked d_output (vector operand) and the padded, channels-last
// input (broadcast operand). Summed in chunks of NC images (chunk_grad), so
// that a register tile accumulates over a whole chunk before it is added to
// the total, and the chunk's operands stay in cache.
class Conv2dBackwardWeights : public Conv2dBase<Conv2dBackwardWeights> {
public:
    Input<Buffer<float, 4>> d_output{"d_output"};
    Input<Buffer<float, 4>> input{"input"};
    Output<Buffer<float, 4>> d_weight{"d_weight"};
    Output<Buffer<float, 1>> d_bias{"d_bias"};

    void generate() {
        B = channel_block(CO);
        if (use_winograd(WO(), HO())) {
            plan_winograd(winograd, CI, CO, WO(), HO());
            NC = chunk_images(winograd.tiles_x * winograd.tiles_y, 128);
            // Half the batch or more per chunk (the small-image layers): one
            // chunk, the products split between the cores (schedule_single_chunk_cpu).
            single_chunk = 2 * NC >= N;
            if (single_chunk) NC = N;
            define_winograd_grad();
        } else {
            NC = chunk_images(WO() * HO(), 512);
            src = input_source(input, stride);
            d_out_blocked = channel_blocked(d_output, B, "d_output_blocked");
            rp = RDom(0, WO(), 0, HO(), 0, NC, "rp");  // (ox, oy, image in chunk)
            Expr image = j * NC + rp.z;
            chunk_grad(cb, ci, kx, ky, kb, j) = 0.0f;
            chunk_grad(cb, ci, kx, ky, kb, j) += d_out_blocked(cb, rp.x, rp.y, kb, image) *
                                                 src(ci, rp.x * stride + kx, rp.y * stride + ky, image);
        }
        if (single_chunk) {
            grad_w(cb, ci, kx, ky, kb) = chunk_grad(cb, ci, kx, ky, kb, 0);
        } else {
            rj = RDom(0, N / NC, "rj");  // chunks
            grad_w(cb, ci, kx, ky, kb) = 0.0f;
            grad_w(cb, ci, kx, ky, kb) += chunk_grad(cb, ci, kx, ky, kb, rj);
        }
        if (winograd.active) {
            // G^T grad_w G: the products' gradient back to the 3x3 kernel.
            // Still channel-blocked, so that the CPU schedule vectorises it.
            const auto gt = transposed(winograd.matrices().g);
            std::vector<Expr> u, v;
            for (int i = 0; i < winograd.alpha; i++) u.push_back(grad_w(cb, ci, i, b, kb));
            grad_kernel_rows(cb, ci, kx, b, kb) = winograd_apply(gt, kx, u);
            for (int i = 0; i < winograd.alpha; i++) v.push_back(grad_kernel_rows(cb, ci, kx, i, kb));
            grad_kernel(cb, ci, kx, ky, kb) = winograd_apply(gt, ky, v);
            d_weight(kx, ky, ci, co) = grad_kernel(co % B, ci, kx, ky, co / B);
        } else {
            d_weight(kx, ky, ci, co) = grad_w(co % B, ci, kx, ky, co / B);
        }

        RDom r(0, WO(), 0, HO(), 0, N, "r");
        grad_b(co) = 0.0f;
        grad_b(co) += d_output(r.x, r.y, co, r.z);
        d_bias(co) = grad_b(co);
    }

    void schedule() {
        pin_shape(d_output, output_shape());
        pin_shape(input, input_shape());
        pin_shape(d_weight, weight_shape());
        pin_shape(d_bias, {CO});
        if (using_autoscheduler()) return;
        if (gpu()) {
            schedule_gpu();
        } else {
            schedule_cpu();
        }
    }

private:
    // Winograd, the adjoint of the forward's: the gradient of the
    // product M (cb, tile, kb, a, b) is A dY A^T for each tile's m x m output
    // gradient dY, and the gradient of the transformed kernel U is the sum over
    // tiles of dM times the forward's V = B^T d B: (m+2)^2 products (output
    // channels x tiles times tiles x input channels). chunk_grad keeps the
    // direct version's dimensions, with (kx, ky) standing for the product's
    // (a, b), 0..m+1, so that both share the chunked reduction and its schedule.
    void define_winograd_grad() {
        src = channels_last_padded(input, W, H, P, "input_padded");
        define_winograd_input(winograd, src);
        // Odd output sizes: the last tiles' missing outputs have zero gradient.
        Func d_out_ext = BoundaryConditions::constant_exterior(d_output, 0.0f, {{0, WO()}, {0, HO()}});
        d_out_blocked = Func("d_output_blocked");
        d_out_blocked(cb, x, y, kb, n) = d_out_ext(x, y, kb * B + cb, n);
        const auto at_adjoint = transposed(winograd.matrices().at);
        const int m = winograd.m;
        std::vector<Expr> dy, rows;
        for (int i = 0; i < m; i++) dy.push_back(d_out_blocked(cb, m * tx + i, m * ty + row, kb, n));
        grad_rows(cb, tx, ty, kb, n, a, row) = winograd_apply(at_adjoint, a, dy);
        for (int i = 0; i < m; i++) rows.push_back(grad_rows(cb, tx, ty, kb, n, a, i));
        grad_product(cb, tx, ty, kb, n, a, b) = winograd_apply(at_adjoint, b, rows);
        rp = RDom(0, winograd.tiles_x, 0, winograd.tiles_y, 0, NC, "rp");  // (tx, ty, image in chunk)
        Expr image = j * NC + rp.z;
        chunk_grad(cb, ci, kx, ky, kb, j) = 0.0f;
        chunk_grad(cb, ci, kx, ky, kb, j) += grad_product(cb, rp.x, rp.y, kb, image, kx, ky) *
                                             winograd.input(ci, rp.x, rp.y, image, kx, ky);
    }

    // Images per chunk: enough positions (pixels, or Winograd tiles) per chunk
    // that adding a register tile into the partial sums is rare, since the
    // partial sums (CI*CO*K*K floats, or CI*CO*(m+2)^2) do not fit in cache.
    // Measured on the 2-core AVX-512 machine: 512-channel 3x3 went from 49% to
    // 65% of peak (per CPU-second) with chunks of >= 512 pixels instead of
    // L2-sized ones. A chunk's tiles sweep the channel blocks outermost, so
    // each block's slice of d_output stays in L2.
    int chunk_images(int per_image, int wanted) const {
        const int halves = N % 2 == 0 ? 2 : 1;
        const int per_half = N / halves;
        for (int d = 1; d <= per_half; d++) {
            if (per_half % d == 0 && d * per_image >= wanted) return d;
        }
        return per_half;
    }

    // Not yet timed on a GPU (none lent to this task); proven on PoCL. Each
    // chunk's partial sums in one kernel: a thread owns one output channel (the
    // 16 lanes of cb adjacent, for coalescing) and a register tile of rc input
    // channels times the K taps of a row; then one kernel adds the chunks.
    void schedule_gpu() {
        int rc = 1;
        for (int v = 4; v >= 1; v--) {
            if (CI % v == 0) {
                rc = v;
                break;
            }
        }
        const int groups = CI / rc;
        int per_block = std::min(groups, 16);  // channel groups per GPU block: a divisor of groups
        while (groups % per_block) per_block--;
        Var cio{"cio"}, cii{"cii"}, cioo{"cioo"}, cioi{"cioi"}, kbj{"kbj"};
        Func tiles = chunk_grad.in(grad_w);
        tiles.compute_root()
            .split(ci, cio, cii, rc)
            .split(cio, cioo, cioi, per_block)
            .fuse(kb, j, kbj)
            .reorder(kx, cii, cb, cioi, cioo, ky, kbj)
            .unroll(kx)
            .unroll(cii)
            .gpu_threads(cb, cioi)
            .gpu_blocks(cioo, ky, kbj);
        chunk_grad.compute_at(tiles, cb).unroll(kx).unroll(ci);  // one thread's registers
        chunk_grad.update().reorder(kx, ci, rp.x, rp.y, rp.z, cb, ky, kb, j).unroll(kx).unroll(ci);
        schedule_flat_gpu(grad_w, {cb, ci, kx, ky, kb});
        if (!single_chunk) flat_gpu_loop(grad_w.update(), {cb, ci, kx, ky, kb});
        schedule_flat_gpu(d_weight, {kx, ky, ci, co});
        schedule_flat_gpu(d_bias, {co});
        schedule_channel_sum_over_planes(grad_b, co, WO(), N, get_target());
        schedule_flat_gpu(src, {c, x, y, n});
        schedule_flat_gpu(d_out_blocked, {cb, x, y, kb, n});
        if (winograd.active) {
            schedule_flat_gpu(winograd.input, {c, tx, ty, n, a, b});
            schedule_flat_gpu(grad_product, {cb, tx, ty, kb, n, a, b});
        }
    }

    void schedule_cpu() {
        // Register tile: vo channel vectors x tc input channels x the K taps of
        // a row, which share each d_output vector. Winograd's 16 products share
        // no operand: a tile is vo x tc of one of them.
        const bool taps_in_tile = !winograd.active;
        const int blocks = CO / B, taps = taps_in_tile ? int(K) : 1;
        int vo = 1, tc = 1;
        for (int v = 1; v <= std::min(blocks, 4); v++) {
            if (blocks % v) continue;
            for (int t = 1; t <= CI; t++) {
                if (CI % t || v * t * taps > registers().max_accumulators()) continue;
                if (v * t > vo * tc || (v * t == vo * tc && v > vo)) vo = v, tc = t;
            }
        }
        const int chunks = N / NC;
        if (single_chunk) return schedule_single_chunk_cpu(vo, tc);
        // Chunks in two halves, one per core, each with its own partial sums.
        const int halves = chunks % 2 == 0 ? 2 : 1;
        RVar rj_outer{"rj_outer"}, rj_inner{"rj_inner"};
        Var half{"half"}, cio{"cio"}, cii{"cii"}, kbo{"kbo"}, kbi{"kbi"}, cig{"cig"};
        grad_w.update().split(rj.x, rj_outer, rj_inner, chunks / halves);
        Func partial = grad_w.update().rfactor(rj_outer, half);
        partial.compute_root().vectorize(cb).parallel(half);
        // Tiles sweep 16 input channels (one cache line of the channels-last
        // input per pixel) for every channel block before the next 16: that
        // input slice stays in L2 while the blocks' d_output slices stream.
        int group = std::max(1, 16 / tc);
        while ((CI / tc) % group) group--;
        partial.update()
            .split(ci, cio, cii, tc)
            .split(cio, cig, cio, group)
            .split(kb, kbo, kbi, vo)
            .vectorize(cb)
            .unroll(kbi)
            .unroll(cii)
            .parallel(half);
        // The tile's accumulators, over one chunk: small enough for registers.
        chunk_grad.vectorize(cb).unroll(kb).unroll(ci);
        chunk_grad.update().vectorize(cb).unroll(kb).unroll(ci);
        if (taps_in_tile) {
            partial.update().reorder(cb, kbi, cii, kx, ky, cio, kbo, cig, rj_inner, half).unroll(kx);
            chunk_grad.compute_at(partial, ky).unroll(kx);
            chunk_grad.update().reorder(cb, kb, ci, kx, rp.x, rp.y, rp.z, ky, j).unroll(kx);
        } else {
            // One product at a time: its slices of both operands stay in L1/L2.
            partial.update().reorder(cb, kbi, cii, cio, kbo, cig, kx, ky, rj_inner, half);
            chunk_grad.compute_at(partial, cio);
            chunk_grad.update().reorder(cb, kb, ci, rp.x, rp.y, rp.z, kx, ky, j);
        }
        // One chunk of each operand at a time, where its tiles are made.
        src.compute_at(partial, rj_inner);
        schedule_repack_cpu(src, CI);
        d_out_blocked.compute_at(partial, rj_inner).vectorize(cb);
        if (winograd.active) {
            schedule_winograd_input_cpu(winograd, LoopLevel(partial, rj_inner), CI);
            grad_product.compute_at(partial, rj_inner)
                .reorder(cb, a, b, tx, ty, kb, n)
                .vectorize(cb)
                .unroll(a)
                .unroll(b);
        }
        grad_w.compute_root().vectorize(cb).parallel(kb);
        grad_w.update().vectorize(cb).parallel(kb);
        schedule_weight_gradient_cpu();
    }
    // d_weight from grad_w; with Winograd, through G^T . G on 16-channel vectors.
    void schedule_weight_gradient_cpu() {
        d_weight.parallel(co);
        if (winograd.active) {
            grad_kernel.compute_root().vectorize(cb).unroll(kx).unroll(ky).parallel(kb);
            grad_kernel_rows.compute_at(grad_kernel, ci).vectorize(cb).unroll(kx).unroll(b);
        }
        schedule_channel_sum_over_planes(grad_b, co, WO(), N, get_target());
    }

    // Winograd with the whole batch as one chunk: the products are divided
    // between the cores, and each register tile is stored straight into
    // grad_w. Partial sums per core would be CI*CO*(m+2)^2 floats each (26 MB
    // at 512 channels), zeroed, re-read and added: memory traffic that
    // outweighed the products.
    void schedule_single_chunk_cpu(int vo, int tc) {
        Var cio{"cio"}, cii{"cii"}, kbo{"kbo"}, kbi{"kbi"}, product{"product"};
        grad_w.compute_root()
            .split(ci, cio, cii, tc)
            .split(kb, kbo, kbi, vo)
            .reorder(cb, kbi, cii, cio, kbo, kx, ky)
            .fuse(kx, ky, product)
            .vectorize(cb)
            .unroll(kbi)
            .unroll(cii)
            .parallel(product);
        chunk_grad.compute_at(grad_w, cio).vectorize(cb).unroll(kb).unroll(ci);
        chunk_grad.update()
            .reorder(cb, kb, ci, rp.x, rp.y, rp.z, kx, ky, j)
            .vectorize(cb)
            .unroll(kb)
            .unroll(ci);
        // The transforms for the whole batch, image by image in parallel.
        schedule_winograd_input_cpu(winograd, LoopLevel::root(), CI);
        winograd.input.parallel(n);
        src.compute_at(winograd.input, n);
        schedule_repack_cpu(src, CI);
        grad_product.compute_root().reorder(cb, a, b, tx, ty, kb, n).vectorize(cb).unroll(a).unroll(b).parallel(n);
        d_out_blocked.compute_at(grad_product, n).vectorize(cb);
        schedule_weight_gradient_cpu();
    }

    Var j{"j"};  // chunk of NC images
    int B = 1, NC = 1, stride = 1;
    bool single_chunk = false;  // Winograd only: see schedule_single_chunk_cpu
    RDom rp, rj;
    Winograd winograd;
    Func grad_rows{"winograd_grad_rows"}, grad_product{"winograd_grad_product"};
    Func grad_kernel_rows{"winograd_grad_kernel_rows"}, grad_kernel{"winograd_grad_kernel"};
    Func src, d_out_blocked, chunk_grad{"chunk_grad"}, grad_w{"grad_w"}, grad_b{"grad_b"};
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::Conv2dForward, conv2d_forward)
HALIDE_REGISTER_GENERATOR(hlnet::Conv2dBackwardData, conv2d_backward_data)
HALIDE_REGISTER_GENERATOR(hlnet::Conv2dBackwardWeights, conv2d_backward_weights)
