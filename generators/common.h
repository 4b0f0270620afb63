// Shared by every hlnet generator: shape pinning and the small schedules that
// most pipelines use. The contract these follow is docs/INTERNALS.md.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "Halide.h"
#include "../runtime/layout.h"

namespace hlnet {

using namespace Halide;

// Pins a buffer to one shape: min 0, dense strides, the exact extents (Halide
// order, innermost first), and estimates equal to that shape. A negative extent
// leaves that dimension's extent free (only the input pipeline's image count);
// every dimension after a free one is left unconstrained too.
template <typename Buf>
void pin_shape(Buf &buf, const std::vector<int> &extents, int free_estimate = 1) {
    Region estimates;
    int stride = 1;
    bool free = false;
    for (size_t i = 0; i < extents.size(); i++) {
        int e = extents[i];
        auto d = buf.dim(static_cast<int>(i));
        d.set_min(0);
        if (!free) d.set_stride(stride);
        if (e < 0) {
            free = true;
            estimates.push_back({0, free_estimate});
        } else {
            d.set_extent(e);
            estimates.push_back({0, e});
            stride *= e;
        }
    }
    buf.set_estimates(estimates);
}

// How the activations (x, y, c, n) lie in memory, the `layout`
// GeneratorParam of every pipeline that reads or writes them: NCHW (planes
// dense) or NHWC (channels innermost). The pipelines' indexing is the same in
// both; the CPU schedules follow the layout (vectors along x or along c).
// The GPU schedules are written for NCHW.
enum class Layout { NCHW, NHWC };
inline const std::map<std::string, Layout> &layout_names() {
    static const std::map<std::string, Layout> names{{"nchw", Layout::NCHW}, {"nhwc", Layout::NHWC}};
    return names;
}

// Pins an activation (x, y, c, n) of extents (W, H, C, N), like pin_shape, in
// NCHW or, with channels_last, NHWC: c stride 1, x stride C, except where the
// two layouts are the same memory (runtime/layout.h).
template <typename Buf>
void pin_activation(Buf &buf, const std::vector<int> &extents, bool channels_last) {
    pin_shape(buf, extents);
    if (!channels_last) return;
    int strides[4];
    channels_last_strides(extents.data(), strides);
    for (int d = 0; d < 4; d++) buf.dim(d).set_stride(strides[d]);
}

// ReLU and its gradient, written once for the standalone ops and the fused batch norm.
inline Expr relu(Expr v) { return max(v, 0.0f); }
// The mask is taken from the ReLU's output: output > 0 exactly where input > 0.
inline Expr relu_grad(Expr output, Expr d_output) { return select(output > 0.0f, d_output, 0.0f); }

// Sliding-window geometry, shared by convolution and pooling, forward and backward.
// Output extent: (in + 2P - K)/S + 1.
inline int window_out(int in, int K, int S, int P) { return (in + 2 * P - K) / S + 1; }
// Input pixel that output pixel o reads through tap k.
inline Expr window_tap(Expr o, Expr k, int S, int P) { return o * S + k - P; }
// The backward gather: input pixel i is read by the outputs o = (i+P) div S - q,
// q = 0 .. ceil(K/S)-1, through tap k = (i+P) mod S + S*q (valid while k < K and
// o is in range). Only these taps line up with an output when S > 1. (T is Expr
// inside a pipeline, int for a phase known at generation time; i + P >= 0.)
inline int gather_taps(int K, int S) { return (K + S - 1) / S; }
template <typename T>
T gather_output(T i, T q, int S, int P) { return (i + P) / S - q; }
template <typename T>
T gather_tap(T i, T q, int S, int P) { return (i + P) % S + S * q; }

// Largest of {16, 8, 4, 2, 1} dividing n: the channel block of the repacked layouts.
inline int channel_block(int n, int widest = 16) {
    int b = widest;
    while (n % b) b /= 2;
    return b;
}

// CPU schedule for a 4-D (x, y, c, n) pointwise Func of extents (W, H, C, N):
// the (x, y) plane is one contiguous run, vectorised; planes run in parallel.
// Returns the per-plane loop, for producers computed plane by plane.
inline Var schedule_pointwise_cpu(Func f, Var x, Var y, Var c, Var n, int W, int H) {
    Var xy{"xy"}, cn{"cn"}, task{"task"};
    // Parallel tasks of at least ~64 KB: a 3x3 plane alone is 36 bytes.
    const int planes = std::max(1, 16384 / (W * H));
    f.compute_root().fuse(x, y, xy).fuse(c, n, cn).split(cn, task, cn, planes, TailStrategy::GuardWithIf).parallel(task);
    if (W * H >= 16) f.vectorize(xy, 16, TailStrategy::ShiftInwards);
    return cn;
}

// Vectors along the channels of an NHWC stage: a block of up to 16 that
// divides C (none below 4: the tests' odd channel counts).
inline void vectorize_channels(Stage s, Var c, int C) {
    const int lanes = channel_block(C);
    if (lanes < 4) return;
    Var vectors{"vectors"};
    s.split(c, vectors, c, lanes).vectorize(c);
    if (C / lanes <= 8) s.unroll(vectors);
}

// CPU schedule for a 4-D pointwise Func laid out NHWC, of C channels: each
// image's pixels in memory order, the channels as vectors, the images in
// parallel. Returns the per-image loop, for producers computed image by image.
inline Var schedule_pointwise_channels_last_cpu(Func f, Var x, Var y, Var c, Var n, int C) {
    f.compute_root().reorder(c, x, y, n).parallel(n);
    vectorize_channels(f, c, C);
    return n;
}

// GPU schedule for a stage whose pure vars are `vars` (innermost first): all of
// them fused into one loop split over blocks of `threads`, so one kernel launch
// covers the whole stage (a pure var left out would be one launch per value).
// Returns the thread var, for producers computed per output element.
inline Var flat_gpu_loop(Stage s, const std::vector<Var> &vars, int threads = 256) {
    Var all = vars[0];
    for (size_t i = 1; i < vars.size(); i++) {
        Var fused{all.name() + "_" + vars[i].name()};
        s.fuse(all, vars[i], fused);
        all = fused;
    }
    Var block{"block"}, thread{"thread"};
    s.gpu_tile(all, block, thread, threads, TailStrategy::GuardWithIf);
    return thread;
}
inline Var schedule_flat_gpu(Func f, const std::vector<Var> &vars, int threads = 256) {
    f.compute_root();
    return flat_gpu_loop(Stage(f), vars, threads);
}

// Schedule of a per-channel sum s(c) whose update reduces over (x, y, n) of a
// (W, H, C, N) tensor, in two steps. GPU: one block per channel, one thread per
// image summing its plane, then one thread per channel adding the N partial
// sums. CPU: partial sums per (channel, lane along x, chunk of images), the
// chunks in parallel, each walking its images in memory order (a
// channel-major walk, 9 KB then a 600 KB jump, measured 5x slower); then the
// partials are added. Returns the CPU's partial sums, whose update walks one
// (channel, image) plane at a time inside its loop over c (for producers
// computed per plane), or an undefined Func on the GPU.
inline Func schedule_channel_sum_over_planes(Func s, Var c, int W, int N, const Target &target) {
    std::vector<RVar> r = s.rvars(0);  // (x, y, n)
    if (target.has_gpu_feature()) {
        Var image{"image"};
        Func per_image = s.update().rfactor(r[2], image);
        per_image.compute_root().reorder(image, c).gpu_blocks(c).gpu_threads(image);
        per_image.update().reorder(image, c).gpu_blocks(c).gpu_threads(image);
        schedule_flat_gpu(s, {c}, 64);
        flat_gpu_loop(s.update(), {c}, 64);
        return Func();
    }
    const int lanes = channel_block(W);  // largest power of two <= 16 dividing W
    int chunks = std::min(N, 16);
    while (N % chunks) chunks--;
    Var lane{"lane"}, chunk{"chunk"};
    RVar rxo{"rxo"}, rxi{"rxi"}, rno{"rno"}, rni{"rni"};
    s.update().split(r[0], rxo, rxi, lanes).split(r[2], rno, rni, N / chunks);
    Func partial = s.update().rfactor({{rxi, lane}, {rno, chunk}});
    // Lanes innermost in memory too: stored channel-major, each lane
    // vector of the running sums was a scatter, re-gathered every step.
    partial.compute_root().reorder_storage(lane, c, chunk).vectorize(lane).parallel(chunk);
    partial.update().reorder(lane, rxo, r[1], c, rni, chunk).vectorize(lane).parallel(chunk);
    s.compute_root();
    return partial;
}

// CPU schedule of the same per-channel sum over an NHWC tensor of C channels
// (channels innermost): partial sums per chunk of images, the chunks in
// parallel, each walking its pixels in memory order with the channels as
// vectors; then the partials are added.
inline void schedule_channel_sum_channels_last(Func s, Var c, int C, int N) {
    std::vector<RVar> r = s.rvars(0);  // (x, y, n)
    int chunks = std::min(N, 16);
    while (N % chunks) chunks--;
    Var chunk{"chunk"};
    RVar rno{"rno"}, rni{"rni"};
    s.update().split(r[2], rno, rni, N / chunks);
    Func partial = s.update().rfactor(rno, chunk);
    partial.compute_root().parallel(chunk);
    partial.update().reorder(c, r[0], r[1], rni, chunk).parallel(chunk);
    s.compute_root();
    for (Stage stage : {Stage(partial), partial.update(), Stage(s)}) vectorize_channels(stage, c, C);
}

// The max pool's argmax encoding, which its forward writes and both
// gradients (max_pool_gradient, the batch norm's scatter) read: an input
// pixel's position y * width + x within its plane; argmax_pixel decodes it.
inline Expr argmax_index(Expr x, Expr y, int width) { return y * width + x; }
inline std::pair<Expr, Expr> argmax_pixel(Expr index, int width) { return {index % width, index / width}; }

// The gradient of a K x K max pool (stride S, padding P) at input pixel
// (x, y): d_output summed over the ceil(K/S)^2 windows that can contain the
// pixel and whose argmax (argmax_index) is this pixel. d_output and argmax
// must read 0 and -1 outside the pooled output. One expression, no
// reduction loop: a pointwise stage.
inline Expr max_pool_gradient(Func d_output, Func argmax, Var x, Var y, Var c, Var n, int width, int K, int S, int P) {
    Expr sum = 0.0f;
    for (int qy = 0; qy < gather_taps(K, S); qy++) {
        for (int qx = 0; qx < gather_taps(K, S); qx++) {
            Expr ox = gather_output<Expr>(x, qx, S, P), oy = gather_output<Expr>(y, qy, S, P);
            sum += select(argmax(ox, oy, c, n) == argmax_index(x, y, width), d_output(ox, oy, c, n), 0.0f);
        }
    }
    return sum;
}

// The CPU loops of a max pool's gradient f (max_pool_gradient) over a row of
// `width`: along x, not a fused plane, so that the gather's x/S stays a
// strided load instead of a per-lane division; where S divides the width, x
// is split into its S phases (x = S*xq + p), in which every candidate window
// is a dense load at xq + const, and the phases' vectors interleave into one
// store (the 48x48 layer: 15.5 -> 12.6 ms against vectors along x).
inline void schedule_max_pool_gradient_cpu(Func f, Var x, int width, int S) {
    Var xq{"xq"}, phase{"phase"};
    if (width % S == 0) {
        f.split(x, xq, phase, S).unroll(phase).vectorize(xq, std::max(channel_block(width / S), 4),
                                                          TailStrategy::GuardWithIf);
    } else {
        f.vectorize(x, std::max(channel_block(width), 8), TailStrategy::GuardWithIf);
    }
}

}  // namespace hlnet
