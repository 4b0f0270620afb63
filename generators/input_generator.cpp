// input_pipeline: gathers a batch of uint8 images by index, resizes them
// bilinearly with half-pixel centres (PyTorch align_corners=False) and scales
// to [0, 1]; gathers the labels the same way.
#include "common.h"

namespace hlnet {
namespace {

class InputPipeline : public Generator<InputPipeline> {
public:
    GeneratorParam<int> N{"N", 1};
    GeneratorParam<int> SRC_H{"SRC_H", 28}, SRC_W{"SRC_W", 28}, DST_H{"DST_H", 96}, DST_W{"DST_W", 96};

    Input<Buffer<uint8_t, 3>> images{"images"};  // (SRC_W, SRC_H, count): the whole split
    Input<Buffer<uint8_t, 1>> labels{"labels"};  // (count)
    Input<Buffer<int32_t, 1>> indices{"indices"};  // (N)
    Output<Buffer<float, 4>> output{"output"};  // (DST_W, DST_H, 1, N)
    Output<Buffer<int32_t, 1>> labels_out{"labels_out"};

    void generate() {
        // The image count is the only run-time extent; indices are clamped into it.
        Expr count = images.dim(2).extent();
        Expr image = clamp(indices(n), 0, count - 1);
        source(x, y, n) = cast<float>(images(x, y, image));

        // PyTorch's area_pixel_compute_source_index and upsample_bilinear2d, in float.
        const float scale_x = float(SRC_W) / float(DST_W), scale_y = float(SRC_H) / float(DST_H);
        Expr sx = max(scale_x * (x + 0.5f) - 0.5f, 0.0f), sy = max(scale_y * (y + 0.5f) - 0.5f, 0.0f);
        Expr x0 = cast<int>(sx), y0 = cast<int>(sy);
        Expr x1 = min(x0 + 1, SRC_W - 1), y1 = min(y0 + 1, SRC_H - 1);
        Expr lx = sx - x0, ly = sy - y0;
        Expr top = (1.0f - lx) * source(x0, y0, n) + lx * source(x1, y0, n);
        Expr bottom = (1.0f - lx) * source(x0, y1, n) + lx * source(x1, y1, n);
        resized(x, y, n) = (1.0f - ly) * top + ly * bottom;
        // strict_float: a true division (as ToTensor), not a multiply by 1/255.
        output(x, y, c, n) = strict_float(resized(x, y, n) / 255.0f);
        labels_out(n) = cast<int32_t>(labels(clamp(indices(n), 0, labels.dim(0).extent() - 1)));
    }

    void schedule() {
        pin_shape(images, {SRC_W, SRC_H, -1}, 60000);
        pin_shape(labels, {-1}, 60000);
        pin_shape(indices, {N});
        pin_shape(output, {DST_W, DST_H, 1, N});
        pin_shape(labels_out, {N});
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            schedule_flat_gpu(output, {x, y, c, n});
            schedule_flat_gpu(labels_out, {n}, 64);
        } else {
            Var xy{"xy"};
            output.fuse(x, y, xy).parallel(n).vectorize(xy, 16, TailStrategy::ShiftInwards);
        }
    }

private:
    Var x{"x"}, y{"y"}, c{"c"}, n{"n"};
    Func source{"source"}, resized{"resized"};
};

}  // namespace
}  // namespace hlnet

HALIDE_REGISTER_GENERATOR(hlnet::InputPipeline, input_pipeline)
