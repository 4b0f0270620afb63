// A hand-written Graph (runtime/graph_api.h) for testing the trainer without
// generated code: softmax regression on the raw 28x28 pixels, in plain C++.
// It keeps a batch-norm-like running mean and variance of the input pixels so
// that checkpoints carry state tensors and num_batches_tracked.
//
// Arenas, as the generated code would lay them out:
//   params:      fc.weight [10, 784] at 0, fc.bias [10] at 7840
//   state:       bn.running_mean [1] at 0, bn.running_var [1] at 1
//   activations: x (28, 28, 1, N) f32, dlogits (10, N) f32, labels (N) i32, logits (10, N) f32
#include <cmath>
#include <cstring>

#include "error.h"
#include "graph_api.h"
#include "tensor_view.h"

namespace hlnet {

namespace {

// Built for FAKE_RANKS data-parallel processes (1 unless CMake says otherwise):
// the batch of 32 is split between them, as specc splits a spec's.
#ifndef FAKE_RANKS
#define FAKE_RANKS 1
#endif
constexpr int kRanks = FAKE_RANKS;
constexpr int N = 32 / kRanks, K = 10, W = 28, H = 28, D = W * H;  // batch (per rank), classes, image, features

const TensorInfo kParams[] = {
    {"fc.weight", 0, 2, {K, D, 0, 0}, Init::Xavier, D, K},
    {"fc.bias", K * D, 1, {K, 0, 0, 0}, Init::Zeros, 0, 0},
};
const TensorInfo kStates[] = {
    {"bn.running_mean", 0, 1, {1, 0, 0, 0}, Init::Zeros, 0, 0},
    {"bn.running_var", 1, 1, {1, 0, 0, 0}, Init::Ones, 0, 0},
};
constexpr int64_t kActivationBytes = 4 * (D * N + K * N + N + K * N);

const ModelInfo kInfo = {
    "fake", N, kRanks, 1, H, W, K,
    K * D + K, 2, kActivationBytes,
    kParams, 2, kStates, 2,
    /*lr*/ 0.1f, /*momentum*/ 0.9f, /*weight_decay*/ 1e-4f, /*epochs*/ 1, /*seed*/ 7, "fashion-mnist",
};

float *f32_data(TensorView &v) { return reinterpret_cast<float *>(v.get()->host); }

}  // namespace

struct Graph::Views {
    TensorView params, grads, velocity, state;  // 1-D, whole arenas
    TensorView x, dlogits, labels, logits;
};

Graph::Graph(const Arenas &a) : views_(new Views) {
    Views &v = *views_;
    v.params.bind(a.params, 0, f32(), {K * D + K});
    v.grads.bind(a.grads, 0, f32(), {K * D + K});
    v.velocity.bind(a.velocity, 0, f32(), {K * D + K});
    v.state.bind(a.state, 0, f32(), {2});
    int64_t at = 0;
    v.x.bind(a.activations, at, f32(), {W, H, 1, N}), at += 4 * D * N;
    v.dlogits.bind(a.activations, at, f32(), {K, N}), at += 4 * K * N;
    v.labels.bind(a.activations, at, i32(), {N}), at += 4 * N;
    v.logits.bind(a.activations, at, f32(), {K, N});
}

Graph::~Graph() { delete views_; }

void Graph::set_batchnorm_reducer(BatchNormReducer *) {}  // no batch norm here

int Graph::forward(const Batch &batch, bool training, int valid, Metrics *metrics) {
    Views &v = *views_;
    const halide_buffer_t *images = batch.images;
    const int32_t *indices = reinterpret_cast<const int32_t *>(batch.indices->host);
    if (images->dim[0].extent != W || images->dim[1].extent != H) return -1;
    float *x = f32_data(v.x);
    int32_t *labels = reinterpret_cast<int32_t *>(v.labels.get()->host);
    for (int n = 0; n < N; n++) {
        const uint8_t *image = images->host + int64_t(indices[n]) * images->dim[2].stride;
        for (int i = 0; i < D; i++) x[n * D + i] = image[i] / 255.0f;
        labels[n] = batch.labels->host[indices[n]];
    }
    if (training) {  // running statistics of the pixels, as a batch norm over one channel would
        double sum = 0, sum2 = 0;
        for (int i = 0; i < N * D; i++) sum += x[i], sum2 += double(x[i]) * x[i];
        const double mean = sum / (N * D), var = sum2 / (N * D) - mean * mean;
        float *state = f32_data(v.state);
        state[0] = 0.9f * state[0] + 0.1f * float(mean);
        state[1] = 0.9f * state[1] + 0.1f * float(var * (N * D) / (N * D - 1));
    }
    const float *w = f32_data(v.params), *b = w + K * D;
    float *logits = f32_data(v.logits), *dlogits = f32_data(v.dlogits);
    double loss = 0;
    int correct = 0;
    for (int n = 0; n < N; n++) {
        float *z = logits + n * K;
        int best = 0;
        for (int k = 0; k < K; k++) {
            double acc = b[k];
            for (int i = 0; i < D; i++) acc += double(w[k * D + i]) * x[n * D + i];
            z[k] = float(acc);
            if (z[k] > z[best]) best = k;
        }
        double sum = 0;
        for (int k = 0; k < K; k++) sum += std::exp(double(z[k]) - z[best]);
        for (int k = 0; k < K; k++) {
            const double p = std::exp(double(z[k]) - z[best]) / sum;
            dlogits[n * K + k] = n < valid ? float((p - (k == labels[n])) / valid) : 0.0f;
        }
        if (n < valid) {
            loss += std::log(sum) + z[best] - z[labels[n]];
            correct += best == labels[n];
        }
    }
    metrics->loss = float(loss / valid);
    metrics->correct = correct;
    return 0;
}

int Graph::backward(GradientListener *listener) {
    Views &v = *views_;
    const float *x = f32_data(v.x), *d = f32_data(v.dlogits);
    float *gw = f32_data(v.grads), *gb = gw + K * D;
    std::memset(gw, 0, sizeof(float) * (K * D + K));
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            gb[k] += d[n * K + k];
            for (int i = 0; i < D; i++) gw[k * D + i] += d[n * K + k] * x[n * D + i];
        }
    if (listener) {
        listener->ready(1);
        listener->ready(0);
    }
    return 0;
}

int Graph::update(float lr, float momentum, float weight_decay) {
    float *p = f32_data(views_->params), *g = f32_data(views_->grads), *vel = f32_data(views_->velocity);
    for (int i = 0; i < K * D + K; i++) {
        vel[i] = momentum * vel[i] + g[i] + weight_decay * p[i];
        p[i] -= lr * vel[i];
    }
    return 0;
}

halide_buffer_t *Graph::tensor(const char *name) {
    if (!std::strcmp(name, "logits")) return views_->logits.get();
    if (!std::strcmp(name, "labels")) return views_->labels.get();
    if (!std::strcmp(name, "images")) return views_->x.get();
    return nullptr;
}

// One schedule: the plain C++ above.
void Graph::select_schedule(const std::string &schedule) {
    if (schedule != "manual") fail("the fake graph has only the 'manual' schedule, not '%s'", schedule.c_str());
}
int schedule_count() { return 1; }
const char *schedule_name(int) { return "manual"; }

const ModelInfo &model_info() { return kInfo; }

}  // namespace hlnet
