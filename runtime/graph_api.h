// The interface between the trainer core (runtime/) and the step code that
// build_tools/specc generates for one spec (build/NAME/NAME_graph.cpp).
//
// Everything here has fixed shapes chosen at build time. The trainer owns the
// memory (five flat arenas); the generated Graph only makes typed views into
// them, once, and calls the ahead-of-time compiled Halide pipelines in order.
#pragma once

#include <cstdint>
#include <string>

#include "HalideRuntime.h"

namespace hlnet {

enum class Init { Xavier, Zeros, Ones };

// One named tensor of the checkpoint, in the layout PyTorch uses for it
// (conv OIHW, dense [out, in], batch-norm vectors [C]).
struct TensorInfo {
    const char *name;   // e.g. "stage2.0.conv1.weight", equal to the PyTorch state_dict key
    int64_t offset;     // in floats, from the start of its arena (params or state)
    int rank;           // 1, 2 or 4
    int64_t shape[4];   // PyTorch order, unused entries 0
    Init init;
    int64_t fan_in;     // channels x kh x kw (Xavier); 0 when init is not Xavier
    int64_t fan_out;
};

// Everything the trainer needs to know about the model and its recipe.
struct ModelInfo {
    const char *name;            // spec name, e.g. "resnet18"
    int batch;                   // N of every pipeline: one rank's slice of the spec's batch
    int ranks;                   // data-parallel processes the build is for (HLNET_RANKS); spec batch = batch * ranks
    int channels, height, width; // network input after resize
    int classes;
    int64_t param_floats;        // size of the params, grads and velocity arenas (same layout)
    int64_t state_floats;        // size of the BN running-statistics arena
    int64_t activation_bytes;    // size of the planned activation arena (liveness reuse applied)
    const TensorInfo *params;    // trainable tensors, in arena order
    int num_params;
    const TensorInfo *states;    // "<bn>.running_mean" (init Zeros) and "<bn>.running_var" (init Ones)
    int num_states;
    // Recipe (the spec's training and data sections).
    float lr, momentum, weight_decay;
    int epochs;
    uint64_t seed;
    const char *dataset;         // "fashion-mnist"
};

// The five arenas, allocated by the trainer as 1-D float32 buffers. The
// activation arena is addressed in bytes by its views (any element type) but
// allocated as floats, so that arenas over 2 GiB fit Halide's int32 extents
// (resnet50 at batch 256 needs 3.6 GB). On a GPU target they are device
// allocations that live for the whole run.
struct Arenas {
    halide_buffer_t *params;
    halide_buffer_t *grads;
    halide_buffer_t *velocity;
    halide_buffer_t *state;
    halide_buffer_t *activations;
};

// One batch, as indices into the resident dataset.
struct Batch {
    halide_buffer_t *images;  // uint8 (src_w, src_h, count): the whole split, resident
    halide_buffer_t *labels;  // uint8 (count)
    halide_buffer_t *indices; // int32 (batch): which images form this batch
};

struct Metrics {
    float loss;   // mean softmax cross-entropy over the valid rows of the batch
    int correct;  // rows whose arg-max logit equals the label
};

// Told by Graph::backward() as soon as each parameter's gradient is
// complete, so that a data-parallel trainer can start reducing it while the
// rest of backward runs.
class GradientListener {
public:
    virtual void ready(int param) = 0;  // an index into ModelInfo::params

protected:
    ~GradientListener() = default;
};

// Batch-norm statistics across data-parallel ranks. A build for several ranks
// runs each training batch norm in two parts with a call of this in between:
// forward, batchnorm_moments → moments() → batchnorm_train; backward,
// batchnorm_backward_sums → gradient_means() → batchnorm_backward. Every
// buffer is one float per channel; `count` is the values per channel on this
// rank (N x H x W). Returns 0 or a Halide error (copying a device buffer).
class BatchNormReducer {
public:
    // From this rank's batch mean and biased variance: the mean and biased
    // variance to normalise with, and the unbiased variance the running
    // statistics take.
    virtual int moments(halide_buffer_t *rank_mean, halide_buffer_t *rank_variance, int64_t count,
                        halide_buffer_t *mean, halide_buffer_t *variance, halide_buffer_t *unbiased_variance) = 0;
    // From this rank's sums of dz and dz * xhat (its d_beta and d_gamma): their
    // means over the values the statistics came from.
    virtual int gradient_means(halide_buffer_t *sum_dz, halide_buffer_t *sum_dz_xhat, int64_t count,
                               halide_buffer_t *mean_dz, halide_buffer_t *mean_dz_xhat) = 0;

protected:
    ~BatchNormReducer() = default;
};

// Each rank's batch is its own (PyTorch DDP's default): the Graph's reducer
// until set_batchnorm_reducer() names another (runtime/distributed.cpp).
BatchNormReducer &per_rank_batchnorm();

class Graph {
public:
    explicit Graph(const Arenas &arenas);  // makes every view once; no allocation afterwards
    ~Graph();
    Graph(const Graph &) = delete;
    Graph &operator=(const Graph &) = delete;

    // Input pipeline, every layer forward and the loss. training=true uses batch
    // statistics and updates the BN running statistics; false uses the running
    // statistics. Only the first `valid` rows count in the metrics and in dlogits.
    int forward(const Batch &batch, bool training, int valid, Metrics *metrics);
    // Every layer backward, from the loss of the last forward(training=true);
    // writes the grads arena, telling `listener` (if any) of each gradient done.
    int backward(GradientListener *listener = nullptr);
    // One SGD step over the flat arenas (PyTorch semantics):
    // v = momentum * v + (g + weight_decay * p);  p -= lr * v.
    int update(float lr, float momentum, float weight_decay);
    // The reducer of a build for several ranks (nullptr: per_rank_batchnorm()).
    void set_batchnorm_reducer(BatchNormReducer *reducer);

    // Runs every pipeline in schedule variant `schedule` (one of
    // schedule_name()), or, when `schedule` names no variant, reads it as a
    // best-of file ("<library> <variant>" lines, as NAME_pipelines_bench
    // --best-of writes) and runs each pipeline it lists in that variant, the
    // others manual. Throws hlnet::Error: an unknown variant, an unreadable
    // file, a library or variant this binary does not hold.
    void select_schedule(const std::string &schedule);

    // A named activation view ("images", "labels", "logits", or any node's
    // output by its spec name), for tests; nullptr if there is none.
    halide_buffer_t *tensor(const char *name);

private:
    struct Views;
    Views *views_;
};

const ModelInfo &model_info();

// The schedule variants this binary holds (cmake: HLNET_SCHEDULES), "manual"
// first: i in [0, schedule_count()).
int schedule_count();
const char *schedule_name(int i);

// For NAME_pipelines_bench: every distinct pipeline of the step, with what it
// takes to call it on fresh buffers.
struct PipelineArg {
    halide_type_t type;   // float32, int32 or uint8
    int rank;
    int extents[4];       // Halide order (innermost first), dense
    bool output;
    // Inputs are drawn uniformly from [low, high): indices, labels and arg-max
    // positions must be in range, variances positive.
    double low, high;
    bool channels_last = false;  // an activation laid out NHWC (TensorView::bind)
};

struct PipelineInfo {
    const char *library;   // the manual variant's name, e.g. "conv2d_forward_n32_ci1_co8_h28_w28_k7_s2_p3"
    const char *generator; // "conv2d_forward"
    int calls_per_step;    // calls in one training step (forward with batch statistics, backward, update)
    double flops;          // per call, counting every multiply and add; 0 for memory-bound ops
    double bytes;          // the fewest a call moves: each argument once (of the split, the batch's images)
    int num_args;
    const PipelineArg *args;  // buffers only, in call order (the scalars are fixed)
    // Calls the pipeline's variant `schedule` (an index of schedule_name) on
    // one buffer per argument; returns Halide's status. The scalars are fixed:
    // valid rows = the batch, lr/momentum/weight decay = the spec's.
    int (*run)(int schedule, halide_buffer_t *const *buffers);
};

int pipeline_count();
const PipelineInfo &pipeline_info(int i);

}  // namespace hlnet
