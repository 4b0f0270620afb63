// 2-D convolution with bias, NCHW / OIHW, zero padding, any K, S, P: the
// generators conv2d_forward, conv2d_backward_data and conv2d_backward_weights.
// The algorithm they share is conv2d_base.h, its CPU and GPU schedules
// cpu_schedules.h and gpu_schedules.h, their tiles tiles.h, Winograd's
// matrices winograd.h; here each generator puts them together.
#include "conv2d_base.h"

namespace hlnet {
namespace {

// Forward: the direct convolution (blocked on the CPU, NCHW on the GPU) or Winograd.
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
        pin_activation(input, input_shape(), channels_last());
        pin_shape(weight, weight_shape());
        pin_shape(bias, {CO});
        pin_activation(output, output_shape(), channels_last());
        if (using_autoscheduler()) return;
        if (winograd.active) {
            if (gpu()) {
                schedule_flat_gpu(output, {x, y, co, n});
                schedule_winograd_gpu(winograd, src);
            } else {
                schedule_winograd_cpu(winograd, output, co, src, CI, WO(), HO());
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
            Var no{"no"}, ni{"ni"};
            const int images = weight_sweep_images(int(CI) * CO * K * K, WO() * HO());
            output.split(n, no, ni, images);
            Func tiles = schedule_blocked_conv_cpu(acc, r, output, no, CO / B, WO(), HO(), images);
            schedule_unblock_cpu(output, co, tiles, WO(), HO(), B, no, ni);
            src.compute_at(output, no);
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
        pin_activation(d_output, output_shape(), channels_last());
        pin_shape(weight, weight_shape());
        pin_activation(d_input, input_shape(), channels_last());
        if (using_autoscheduler()) return;
        if (winograd.active) {
            if (gpu()) {
                schedule_flat_gpu(d_input, {x, y, ci, n});
                schedule_winograd_gpu(winograd, src);
            } else {
                schedule_winograd_cpu(winograd, d_input, ci, src, CO, W, H);
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
            // Every phase is computed over the same grid, ceil(W/S) x ceil(H/S)
            // (the mux reads them all at every x); the odd phases' extra column is unused.
            const int width = (int(W) + S - 1) / S, height = (int(H) + S - 1) / S;
            Var no{"no"}, ni{"ni"};
            const int images = weight_sweep_images(int(CI) * CO * K * K, width * height);
            d_input.split(n, no, ni, images);
            src.compute_at(d_input, no);
            schedule_repack_cpu(src, CO);
            for (int py = 0; py < S; py++) {
                for (int px = 0; px < S; px++) {
                    Phase &ph = phases[py * S + px];
                    if (!ph.weights.defined()) continue;
                    ph.weights.compute_root().parallel(kb);
                    ph.tiles = schedule_blocked_conv_cpu(ph.acc, ph.r, d_input, no, CI / B, width, height, images);
                }
            }
            // Interleaved phases read strided from several tiles: no transpose.
            schedule_unblock_cpu(d_input, ci, S == 1 ? phases[0].tiles : Func(), W, H, B, no, ni);
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
    // 0 where the convolution's only consumer is a training batch norm, which
    // subtracts each channel's batch mean: the bias then has no effect on the
    // loss and its true gradient is zero. d_bias is written as zeros instead
    // of summing all of d_output (a pass over up to 151 MB per step).
    GeneratorParam<int> bias_grad{"bias_grad", 1, 0, 1};

    void generate() {
        B = channel_block(CO);
        d_out_planes(x, y, c, n) = d_output(x, y, c, n);
        if (use_winograd(WO(), HO())) {
            plan_winograd(winograd, CI, CO, WO(), HO());
            // Each chunk's products split between the cores
            // (schedule_split_products_cpu), where chunks of 128 tiles would
            // be half the batch or more (the small-image layers), or where the
            // partial sums leave L2 (256 channels: 6.5 MB, which parts of
            // chunks would each zero and add: a tenth of the pass). 256
            // channels on the EPYC (Zen 5): 11.0 ms, against 17.3 for parts of
            // chunks in rows of products (docs/PERFORMANCE.md).
            const int tiles = winograd.tiles_x * winograd.tiles_y;
            split_products = 2 * chunk_images(tiles, 128) >= N || partial_sums_leave_l2();
            if (split_products) kb_groups = output_groups();
            NC = split_products ? split_products_chunk_images() : winograd_chunk_images();
            define_winograd_grad();
        } else {
            NC = gpu() || using_autoscheduler() ? chunk_images(WO() * HO(), 512) : direct_chunk_images();
            src = input_source(input, stride);
            d_out_blocked = channel_blocked(d_out_planes, B, "d_output_blocked");
            rp = RDom(0, WO(), 0, HO(), 0, NC, "rp");  // (ox, oy, image in chunk)
            Expr image = j * NC + rp.z;
            chunk_grad(cb, ci, kx, ky, kb, j) = 0.0f;
            chunk_grad(cb, ci, kx, ky, kb, j) += d_out_blocked(cb, rp.x, rp.y, kb, image) *
                                                 src(ci, rp.x * stride + kx, rp.y * stride + ky, image);
        }
        if (one_chunk()) {
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

        if (bias_grad) {
            RDom r(0, WO(), 0, HO(), 0, N, "r");
            grad_b(co) = 0.0f;
            grad_b(co) += d_output(r.x, r.y, co, r.z);
            d_bias(co) = grad_b(co);
        } else {
            d_bias(co) = 0.0f;
        }
    }

    void schedule() {
        pin_activation(d_output, output_shape(), channels_last());
        pin_activation(input, input_shape(), channels_last());
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
        Func d_out_ext = BoundaryConditions::constant_exterior(d_out_planes, 0.0f, {{0, WO()}, {0, HO()}});
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

    // Images per chunk of the GPU schedule: enough positions (pixels, or
    // Winograd tiles where it decides on split products) per chunk that
    // adding a register tile into the partial sums is rare, since the partial
    // sums (CI*CO*K*K floats, or CI*CO*(m+2)^2) do not fit in cache. (The CPU
    // schedules size their chunks by cache instead, direct_chunk_images and
    // winograd_chunk_images: chunks of >= 512 pixels spilled out of L2 on the
    // small-image layers.)
    int chunk_images(int per_image, int wanted) const {
        const int halves = N % 2 == 0 ? 2 : 1;
        const int per_half = N / halves;
        for (int d = 1; d <= per_half; d++) {
            if (per_half % d == 0 && d * per_image >= wanted) return d;
        }
        return per_half;
    }

    // Images per chunk of the chunked Winograd schedule, which transforms a
    // chunk's operands a row of products (one `a`, alpha of the alpha^2) at a
    // time, just before that row's products: as many as keep the chunk's
    // input and d_output, one row's transforms and its partial sums within
    // three quarters of L2, so that the products read all of them from L2.
    // On the EPYC (Zen 5), against chunks of 128 tiles transformed whole
    // (1.6 MB, through L3): 64 channels at 24x24 in chunks of 1 image 0.87x
    // the time, 128 at 12x12 in 2 images 0.90x (docs/PERFORMANCE.md,
    // 2026-12-07, Zen 5).
    int winograd_chunk_images() const {
        const long operands = 4 * (long(W) * H * CI + long(WO()) * HO() * CO);
        const long per_image = operands + transform_bytes_per_image(CO) / winograd.alpha;
        const long row_partial_sums = 4L * winograd.alpha * CI * CO;
        return images_within(per_image, kL2Bytes * 3 / 4 - row_partial_sums);
    }

    // One image's transformed input and d_output of `out_channels` channels:
    // (m+2)^2 values per tile and channel.
    long transform_bytes_per_image(int out_channels) const {
        return 4L * winograd.tiles_x * winograd.tiles_y * winograd.alpha * winograd.alpha * (int(CI) + out_channels);
    }

    // The most images, a divisor of half the batch (of the batch where it is
    // odd), of `per_image` bytes each within `budget` bytes; at least one.
    int images_within(long per_image, long budget) const {
        const int per_half = N % 2 == 0 ? N / 2 : N;
        return largest_divisor(per_half, int(std::max(1L, budget / per_image)));
    }

    // Images per chunk of the direct convolution's CPU schedule: as many as
    // keep a chunk's operands (its channels-last input window and its blocked
    // d_output) within 768 KB, three quarters of a 1 MB L2, so that the
    // channel groups' tiles re-read them from L2. Measured on the AVX-512
    // Xeon (docs/PERFORMANCE.md): the 256->512 3x3/2 layer went from 45 to
    // 21 ms with chunks of 8 images instead of 64 (2.2 MB of operands), the
    // 128->256 one from 24 to 20 with 4 instead of 16.
    //
    // Where the channel groups are outermost (groups_outer), the group's
    // slice of the partial sums stays in L2 across the chunks and takes its
    // share of the budget. And a register tile of one output block (AVX2's
    // and NEON's, whose 6 accumulator blocks hold 1 block x 2 channels x 3
    // taps) re-reads the group's 16 input channels over the chunk once for
    // every block: its chunk is instead the largest whose sweep (that input
    // and the block's d_output) fits in L1. The 256->512 3x3/2 layer on the
    // EPYC: AVX-512 16 images (8: 6-9% slower), AVX2 8 (16: 9-10% slower;
    // docs/PERFORMANCE.md, 2026-12-07).
    int direct_chunk_images() const {
        const long window = K == 1 ? long(WO()) * HO() : long((WO() - 1) * S + K) * ((HO() - 1) * S + K);
        const long positions = long(WO()) * HO();
        long budget = kL2Bytes * 3 / 4, per_image = 4 * (window * CI + positions * CO);
        if (groups_outer()) {
            const bool in_l1 = choose_weight_gradient_tile(CO / B, CI, K, registers()).vo == 1;
            budget = in_l1 ? kL1Bytes : budget - 4L * 16 * CO * K * K;
            per_image = 4 * (16 * window + (in_l1 ? B : CO) * positions);
        }
        return images_within(per_image, budget);
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
        if (!one_chunk()) {
            // The chunk sum in steps of 8: left whole, the 256 chunks of the
            // stem were unrolled into more loads than 64 registers hold.
            RVar rjo{"rjo"}, rji{"rji"};
            flat_gpu_loop(grad_w.update().split(rj.x, rjo, rji, 8, TailStrategy::GuardWithIf).unroll(rji),
                          {cb, ci, kx, ky, kb});
        }
        schedule_flat_gpu(d_weight, {kx, ky, ci, co});
        schedule_flat_gpu(d_bias, {co});
        if (bias_grad) schedule_channel_sum_over_planes(grad_b, co, WO(), N, get_target());
        schedule_flat_gpu(src, {c, x, y, n});
        schedule_flat_gpu(d_out_blocked, {cb, x, y, kb, n});
        if (winograd.active) {
            schedule_flat_gpu(winograd.input, {c, tx, ty, n, a, b});
            schedule_flat_gpu(grad_product, {cb, tx, ty, kb, n, a, b});
        }
    }

    void schedule_cpu() {
        // Register tile: vo channel vectors x tc input channels x `taps` taps
        // of a row (all K where they fit), which share each d_output vector.
        // Winograd's products share no operand: a tile is vo x tc of one of them.
        const bool taps_in_tile = !winograd.active;
        const auto [vo, tc, taps] = choose_weight_gradient_tile(CO / B / kb_groups, CI, taps_in_tile ? int(K) : 1,
                                                                registers(), winograd.active);
        const int chunks = N / NC;
        if (split_products) return schedule_split_products_cpu(vo, tc);
        // Runs of chunks in parallel (parallel_parts), each with its own partial sums.
        RVar rj_outer{"rj_outer"}, rj_inner{"rj_inner"};
        Var part{"part"}, cio{"cio"}, cii{"cii"}, kbo{"kbo"}, kbi{"kbi"}, cig{"cig"};
        grad_w.update().split(rj.x, rj_outer, rj_inner, chunks / parallel_parts(chunks));
        Func partial = grad_w.update().rfactor(rj_outer, part);
        partial.compute_root().vectorize(cb).parallel(part);
        // Tiles sweep 16 input channels (one cache line of the channels-last
        // input per pixel) for every channel block before the next 16: that
        // input slice stays in L2 while the blocks' d_output slices stream.
        // A ragged last tile guarded (see schedule_split_products_cpu), and
        // no groups: they would not divide its tiles.
        const bool ragged = CI % tc != 0;
        int group = ragged ? 1 : std::max(1, 16 / tc);
        while ((CI / tc) % group) group--;
        partial.update()
            .split(ci, cio, cii, tc, TailStrategy::GuardWithIf)
            .split(cio, cig, cio, group)
            .split(kb, kbo, kbi, vo)
            .vectorize(cb)
            .unroll(kbi)
            .unroll(cii)
            .parallel(part);
        // The tile's accumulators, over one chunk: small enough for registers.
        chunk_grad.vectorize(cb).unroll(kb).unroll(ci);
        chunk_grad.update().vectorize(cb).unroll(kb).unroll(ci);
        if (taps_in_tile) {
            // Rows of taps that do not fit in one pass (the stem's 7 on AVX2)
            // in passes of `taps`, the last one shorter (its missing taps guarded).
            Var kxo{"kxo"}, kxi{"kxi"};
            const TailStrategy guard = TailStrategy::GuardWithIf;
            std::vector<VarOrRVar> order{cb, kbi, cii, kxi, kxo, ky, cio, kbo};
            if (groups_outer()) {
                order.insert(order.end(), {rj_inner, cig, part});
            } else {
                order.insert(order.end(), {cig, rj_inner, part});
            }
            partial.update().split(kx, kxo, kxi, taps, guard).reorder(order).unroll(kxi);
            // Where the groups are outermost, each writes its own slice of the
            // partial sums and repacks its own input: tasks too, with no copy.
            if (groups_outer()) partial.update().parallel(cig);
            chunk_grad.compute_at(partial, kxo).split(kx, kxo, kxi, taps, guard).unroll(kxi);
            chunk_grad.update()
                .split(kx, kxo, kxi, taps, guard)
                .reorder(cb, kb, ci, kxi, rp.x, rp.y, rp.z, kxo, ky, j)
                .unroll(kxi);
        } else {
            // One product at a time: its slices of both operands stay in L1/L2;
            // a row of products (kx, Winograd's a) at a time, for its transforms.
            // The rows unrolled, so that each row's transforms are that row's
            // sums: with a a loop variable, every transform computed all alpha
            // rows and kept one (a mux). EPYC (Zen 5), 64 and 128 channels:
            // 0.94x the time with AVX-512, 0.93x with AVX2.
            partial.update().reorder(cb, kbi, cii, cio, kbo, cig, ky, kx, rj_inner, part).unroll(kx);
            chunk_grad.compute_at(partial, cio);
            chunk_grad.update().reorder(cb, kb, ci, rp.x, rp.y, rp.z, kx, ky, j);
        }
        // One chunk of each operand at a time, where its tiles are made (or
        // d_output once per part, where the channel groups are outermost).
        // (NHWC Winograd: its transforms read both in place, 16 channels a vector.)
        const LoopLevel d_out_level = groups_outer() ? LoopLevel(partial, part) : LoopLevel(partial, rj_inner);
        if (!channels_last() || !winograd.active) {
            src.compute_at(partial, rj_inner);
            schedule_repack_cpu(src, CI);
            d_out_blocked.compute_at(d_out_level).vectorize(cb);
            // NHWC: a pixel's channels (one contiguous run) into all blocks,
            // in memory order, rather than a pass over the pixels per block.
            if (channels_last()) d_out_blocked.reorder(cb, kb, x, y, n);
        }
        if (stage_planes()) {
            copy_planes(input.in(), LoopLevel(partial, rj_inner));
            copy_planes(d_out_planes, d_out_level);
        }
        if (winograd.active) {
            // A row of products' transforms (a fixed a: their first axis, so
            // that each value is computed once), made before its products.
            const LoopLevel row_of_products(partial, kx);
            schedule_winograd_input_cpu(winograd, row_of_products, CI);
            grad_product.compute_at(row_of_products)
                .reorder(cb, a, b, tx, ty, kb, n)
                .vectorize(cb)
                .unroll(a)
                .unroll(b);
        }
        grad_w.vectorize(cb).parallel(kb);
        grad_w.update().vectorize(cb).parallel(kb);
        schedule_weight_gradient_cpu();
    }
    // Parallel tasks of the chunked schedule, each summing a run of chunks
    // into its own copy of the partial sums: a divisor of the chunks, up to
    // 16 for many-core machines while the copies (each zeroed and added into
    // grad_w once more) stay within 8 MB, and 2 where they do not. Two, one
    // per core of the development machine, left the other cores of a larger
    // one idle in every chunked weight gradient. On that 2-core EPYC, the
    // passes moved by -4% to +4% (docs/PERFORMANCE.md, 2026-12-07): the
    // stem and 64->128 3x3/2 in 16 parts, 128->256 in 4, 256->512 in 2 x 16
    // channel groups (+3.6%), Winograd 64ch in 16, 128ch in 4. Not yet timed
    // on more than 2 cores.
    int parallel_parts(int chunks) const {
        int parts = 1;
        for (int d = 2; d <= std::min(chunks, 16); d++) {
            if (chunks % d == 0 && (d == 2 || d * partial_sums_bytes() <= kL3Bytes)) parts = d;
        }
        return parts;
    }
    // Whether the chunked schedule copies each chunk of the NCHW input and
    // d_output plane by plane (contiguous vectors) before repacking and
    // blocking them, so that their 16-channel gathers read L2 instead of 16
    // planes in DRAM: where they gather whole planes (not the strided 1x1's
    // quarter) of 12x12 or more. Weight gradient, AVX-512 / AVX2: 64->128
    // 3x3/2 7.8 / 5.2% faster, 128->256 2.3 / 3.8%, Winograd 64ch 3.6 / 3.2%,
    // 128ch 1.6 / 3.2%; at 6x6 (256->512) 2.7% slower.
    bool stage_planes() const {
        return !channels_last() && K > 1 && CI % 16 == 0 && W >= 12 && WO() * HO() >= registers().lanes;
    }
    void copy_planes(Func planes, LoopLevel level) {
        Var xy{"xy"};
        planes.compute_at(level).fuse(planes.args()[0], planes.args()[1], xy).vectorize(xy, registers().lanes);
    }
    // One copy of the partial sums: CI*CO*K*K floats, or CI*CO*(m+2)^2 with
    // Winograd.
    double partial_sums_bytes() const {
        const int taps = winograd.active ? winograd.alpha : int(K);
        return 4.0 * int(CI) * int(CO) * taps * taps;
    }
    // Whether a part's partial sums pass 2 MB, so that adding every chunk's
    // tiles into all of them goes to L3 each time.
    bool partial_sums_leave_l2() const { return partial_sums_bytes() > 2 * kL2Bytes; }
    // Whether the direct schedule sweeps the chunks inside each group of 16
    // input channels rather than the groups inside each chunk: where the
    // partial sums leave L2 (the 256->512 layer: 4.7 MB; their adds were a
    // quarter of the pass), a group's slice (295 KB there) stays in L2.
    // d_output is then blocked once per part instead of per chunk.
    bool groups_outer() const { return !winograd.active && partial_sums_leave_l2(); }
    // d_weight from grad_w; with Winograd, through G^T . G on 16-channel vectors.
    // A task per block of B output channels, each channel's row written in
    // turn, reading the block's values B floats apart (in order, from L2),
    // with Winograd's G^T . G computed per block there. A task per channel
    // read its values 16 * CI floats apart, a cache line each, and G^T . G
    // went through memory (9.4 MB at 512 channels): the 512-channel pass
    // alone 12.89 -> 12.27 ms (EPYC, Zen 5; in the step within the noise).
    // With groups of output channels (output_groups), grad_w is computed a
    // group at a time, each group's G^T . G right after its last chunk,
    // reading the group's slice from L3 rather than all of grad_w (26 MB at
    // 512 channels) from DRAM: that pass 0.89x the time with AVX-512, 0.94x
    // with AVX2.
    void schedule_weight_gradient_cpu() {
        Var coo{"coo"}, coi{"coi"}, group{"group"};
        d_weight.split(co, coo, coi, B).reorder(ci, kx, ky, coi, coo);
        if (kb_groups > 1) {
            d_weight.split(coo, group, coo, CO / B / kb_groups);
            grad_w.compute_at(d_weight, group);
        } else {
            grad_w.compute_root();
        }
        d_weight.parallel(coo);
        if (winograd.active) {
            grad_kernel.compute_at(d_weight, coo).vectorize(cb).unroll(kx).unroll(ky);
            grad_kernel_rows.compute_at(grad_kernel, ci).vectorize(cb).unroll(kx).unroll(b);
        }
        if (bias_grad && channels_last()) {
            schedule_channel_sum_channels_last(grad_b, co, CO, N);
        } else if (bias_grad) {
            schedule_channel_sum_over_planes(grad_b, co, WO(), N, get_target());
        }
    }

    // Images per chunk where the products are split between the cores: as
    // many as keep the chunk's transforms (the input and one output group's
    // d_output) within 2 MB, so that the products read them from the cores'
    // L2 rather than through L3 and DRAM. The 256-channel 6x6 layer on the
    // EPYC (Zen 5): 8 images (1.6 MB) 0.58x the time of one chunk (26 MB each
    // of transformed input and d_output); 4 and 16 images 0.64x and 0.75x.
    int split_products_chunk_images() const {
        const long per_image = transform_bytes_per_image(CO / kb_groups);
        return largest_divisor(N, int(std::max(1L, 2 * kL2Bytes / per_image)));
    }

    // Groups of output-channel blocks, each summed over all the chunks before
    // the next, in the split-products schedule: the fewest whose slice of
    // grad_w stays within the share of L3 between chunks. 512 channels
    // (26 MB of partial sums): 4 groups of 6.5 MB in chunks of 32 images,
    // each chunk's input transformed again per group; on the EPYC (Zen 5)
    // 13.1 against 14.0 ms for one chunk of 256 (in chunks without groups:
    // 1.2-1.8x).
    int output_groups() const {
        const int blocks = CO / B;
        for (int g = 1; g < blocks; g++) {
            if (blocks % g == 0 && partial_sums_bytes() / g <= kL3Bytes) return g;
        }
        return blocks;
    }

    // Winograd with the products of each chunk divided between the cores,
    // the chunks one after another: each register tile is stored straight
    // into grad_w (one chunk) or added into it (several). Partial sums per core
    // would be CI*CO*(m+2)^2 floats each (26 MB at 512 channels), zeroed,
    // re-read and added: memory traffic that outweighed the products.
    void schedule_split_products_cpu(int vo, int tc) {
        Var cio{"cio"}, cii{"cii"}, kbo{"kbo"}, kbi{"kbi"}, kbh{"kbh"}, product{"product"}, task{"task"};
        const bool chunks = !one_chunk();
        if (chunks) grad_w.vectorize(cb).parallel(kb);  // the zeros
        Stage tiles = chunks ? Stage(grad_w.update()) : Stage(grad_w);
        std::vector<VarOrRVar> order{cb, kbi, cii, cio, kbo, kx, ky};
        if (chunks) order.push_back(rj.x);
        // A ragged last tile (tc need not divide CI) guarded, not shifted
        // inwards: in an added-into stage the overlap would be added twice.
        tiles.split(ci, cio, cii, tc, TailStrategy::GuardWithIf)
            .split(kb, kbo, kbi, vo)
            .reorder(order)
            .fuse(kx, ky, product)
            .vectorize(cb)
            .unroll(kbi)
            .unroll(cii);
        // Each product in two halves of its output channels: 25 products
        // left one core idle for the last (the profiler's wait 0.7-1.3 ms
        // of the 22-25 ms pass at 256 and 512 channels; 0.2-0.26 with 50
        // tasks). 512 channels 22.8 -> 21.6 ms; 256 unchanged within noise.
        const int kb_tiles = CO / B / kb_groups / vo;
        if (kb_tiles % 2 == 0) {
            tiles.split(kbo, kbh, kbo, kb_tiles / 2).fuse(kbh, product, task).parallel(task);
        } else {
            tiles.parallel(product);
        }
        chunk_grad.compute_at(grad_w, cio).vectorize(cb).unroll(kb).unroll(ci);
        chunk_grad.update()
            .reorder(cb, kb, ci, rp.x, rp.y, rp.z, kx, ky, j)
            .vectorize(cb)
            .unroll(kb)
            .unroll(ci);
        // The transforms for the chunk (of the group), image by image in parallel.
        const LoopLevel per_chunk = chunks ? LoopLevel(grad_w, rj.x) : LoopLevel::root();
        schedule_winograd_input_cpu(winograd, per_chunk, CI);
        winograd.input.parallel(n);
        grad_product.compute_at(per_chunk)
            .reorder(cb, a, b, tx, ty, kb, n)
            .vectorize(cb)
            .unroll(a)
            .unroll(b)
            .parallel(n);
        if (!channels_last()) {  // NHWC: read in place by the transforms
            src.compute_at(winograd.input, n);
            schedule_repack_cpu(src, CI);
            d_out_blocked.compute_at(grad_product, n).vectorize(cb);
        }
        schedule_weight_gradient_cpu();
    }

    Var j{"j"};  // chunk of NC images
    int B = 1, NC = 1, stride = 1;
    bool split_products = false;  // Winograd only: see schedule_split_products_cpu
    int kb_groups = 1;            // of output-channel blocks, with split products: see output_groups
    // Whether grad_w is one chunk's products, stored whole (no sum of chunks).
    bool one_chunk() const { return split_products && NC == N; }
    RDom rp, rj;
    Winograd winograd;
    Func grad_rows{"winograd_grad_rows"}, grad_product{"winograd_grad_product"};
    Func grad_kernel_rows{"winograd_grad_kernel_rows"}, grad_kernel{"winograd_grad_kernel"};
    // d_output as the blocked operand reads it: its own Func, which
    // copy_planes() can schedule.
    Func d_out_planes{"d_output_planes"};
    Func src, d_out_blocked, chunk_grad{"chunk_grad"}, grad_w{"grad_w"}, grad_b{"grad_b"};
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::Conv2dForward, conv2d_forward)
HALIDE_REGISTER_GENERATOR(hlnet::Conv2dBackwardData, conv2d_backward_data)
HALIDE_REGISTER_GENERATOR(hlnet::Conv2dBackwardWeights, conv2d_backward_weights)
