// The NHWC layout of an (x, y, c, n) activation: one rule for the generators
// (which pin it), the runtime (which binds views with it) and the tests.
// Header-only and free of dependencies, so that all three can include it.
#pragma once

namespace hlnet {

// Whether an activation of `width` x `height` pixels and `channels` channels
// lies otherwise in memory in NHWC than in NCHW: not where C == 1 or
// W == H == 1, whose two layouts are the same memory. Both keep the dense
// strides there, so that the input pipeline's images and the pooled features
// need no layout.
constexpr bool channels_last_differs(int width, int height, int channels) {
    return channels > 1 && width * height > 1;
}

// The strides of an (x, y, c, n) activation of `extents` laid out NHWC:
// channels innermost, or the dense strides where the two layouts agree.
inline void channels_last_strides(const int extents[4], int strides[4]) {
    const int W = extents[0], H = extents[1], C = extents[2];
    const bool differs = channels_last_differs(W, H, C);
    strides[0] = differs ? C : 1;
    strides[1] = differs ? C * W : W;
    strides[2] = differs ? 1 : W * H;
    strides[3] = C * W * H;
}

}  // namespace hlnet
