// torch_parity_dump DIR: runs a few op instances on fixed random inputs and
// writes every input and output to DIR (raw float32 / int32, one file per
// tensor, listed in DIR/manifest.txt as "name type extents..." in Halide order)
// for torch_parity.py to recompute with PyTorch and compare.
#include <cstdio>
#include <string>

#include "op_cases.h"
#include "test_util.h"

using namespace hlnet_test;

namespace {

std::string g_dir;
FILE *g_manifest = nullptr;

template <typename T>
void dump(const char *name, Buffer<T> &b) {
    b.copy_to_host();
    const std::string path = g_dir + "/" + name + ".bin";
    FILE *f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(b.data(), sizeof(T), b.number_of_elements(), f) != b.number_of_elements()) {
        std::fprintf(stderr, "torch_parity_dump: cannot write %s\n", path.c_str());
        std::exit(1);
    }
    std::fclose(f);
    std::fprintf(g_manifest, "%s %s", name, sizeof(T) == 1 ? "uint8" : (std::is_same_v<T, float> ? "float32" : "int32"));
    for (int i = 0; i < b.dimensions(); i++) std::fprintf(g_manifest, " %d", b.dim(i).extent());
    std::fprintf(g_manifest, "\n");
}

void check(int rc, const char *what) {
    if (rc) {
        std::fprintf(stderr, "torch_parity_dump: %s failed (%d)\n", what, rc);
        std::exit(1);
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: torch_parity_dump DIR\n");
        return 2;
    }
    g_dir = argv[1];
    g_manifest = std::fopen((g_dir + "/manifest.txt").c_str(), "w");
    if (!g_manifest) {
        std::fprintf(stderr, "torch_parity_dump: cannot write %s/manifest.txt (HINT: create the directory)\n", argv[1]);
        return 1;
    }

    // conv 3x3 stride 2 pad 1: N=2 CI=16 CO=32 8x8 -> 4x4.
    {
        auto in = random_buffer({8, 8, 16, 2}, 1), w = random_buffer({3, 3, 16, 32}, 2), b = random_buffer({32}, 3);
        auto d_out = random_buffer({4, 4, 32, 2}, 4);
        auto out = output_buffer({4, 4, 32, 2}), d_in = output_buffer({8, 8, 16, 2});
        auto d_w = output_buffer({3, 3, 16, 32}), d_b = output_buffer({32});
        check(conv2d_forward_n2_ci16_co32_h8_w8_k3_s2_p1(in, w, b, out), "conv2d_forward");
        check(conv2d_backward_data_n2_ci16_co32_h8_w8_k3_s2_p1(d_out, w, d_in), "conv2d_backward_data");
        check(conv2d_backward_weights_n2_ci16_co32_h8_w8_k3_s2_p1(d_out, in, d_w, d_b), "conv2d_backward_weights");
        dump("conv_input", in), dump("conv_weight", w), dump("conv_bias", b), dump("conv_d_output", d_out);
        dump("conv_output", out), dump("conv_d_input", d_in), dump("conv_d_weight", d_w), dump("conv_d_bias", d_b);
    }
    // batch norm, training, ReLU and residual fused: N=3 C=4 5x3.
    {
        auto x = random_buffer({5, 3, 4, 3}, 11, -1.0f, 3.0f), res = random_buffer({5, 3, 4, 3}, 12);
        auto gamma = random_buffer({4}, 13, 0.5f, 1.5f), beta = random_buffer({4}, 14);
        auto rm = random_buffer({4}, 15), rv = random_buffer({4}, 16, 0.5f, 1.5f);
        dump("bn_input", x), dump("bn_residual", res), dump("bn_gamma", gamma), dump("bn_beta", beta);
        dump("bn_running_mean", rm), dump("bn_running_var", rv);
        auto out = output_buffer({5, 3, 4, 3}), mean = output_buffer({4}), inv_std = output_buffer({4});
        check(batchnorm_train_n3_c4_h3_w5_relu1_residual1(x, gamma, beta, rm, rv, res, out, mean, inv_std, rm, rv),
              "batchnorm_train");
        dump("bn_output", out), dump("bn_new_running_mean", rm), dump("bn_new_running_var", rv);
    }
    // max pool 3x3 stride 2 pad 1 with ties (values from {0, 1, 2}): N=2 C=3 9x7.
    {
        auto in = random_buffer({7, 9, 3, 2}, 21, 0.0f, 3.0f);
        in.for_each_value([](float &v) { v = float(int(v)); });
        in.set_host_dirty();
        auto d_out = random_buffer({4, 5, 3, 2}, 22);
        auto out = output_buffer({4, 5, 3, 2}), d_in = output_buffer({7, 9, 3, 2});
        auto argmax = output_buffer<int32_t>({4, 5, 3, 2});
        check(maxpool_forward_n2_c3_h9_w7_k3_s2_p1(in, out, argmax), "maxpool_forward");
        check(maxpool_backward_n2_c3_h9_w7_k3_s2_p1(d_out, argmax, d_in), "maxpool_backward");
        dump("pool_input", in), dump("pool_d_output", d_out), dump("pool_output", out), dump("pool_argmax", argmax);
        dump("pool_d_input", d_in);
    }
    // input pipeline: 28x28 uint8 -> 96x96 floats.
    {
        Buffer<uint8_t> images(28, 28, 5), labels(5);
        std::mt19937 rng(31);
        images.for_each_value([&](uint8_t &v) { v = uint8_t(rng() % 256); });
        labels.for_each_value([&](uint8_t &v) { v = uint8_t(rng() % 10); });
        images.set_host_dirty(), labels.set_host_dirty();
        Buffer<int32_t> indices(3);
        indices(0) = 4, indices(1) = 0, indices(2) = 2;
        auto out = output_buffer({96, 96, 1, 3});
        auto labels_out = output_buffer<int32_t>({3});
        check(input_pipeline_n3_src_h28_src_w28_dst_h96_dst_w96(images, labels, indices, out, labels_out), "input_pipeline");
        dump("input_images", images), dump("input_indices", indices), dump("input_output", out);
    }
    std::fclose(g_manifest);
    return 0;
}
