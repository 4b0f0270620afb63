// The trainer core: the model's memory, its initialisation and checkpoints,
// the epoch loop and evaluation. train_main.cpp, bench_main.cpp and the parity
// test are thin programs over this.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "HalideBuffer.h"
#include "checkpoint.h"
#include "cli.h"
#include "distributed.h"
#include "graph_api.h"
#include "idx.h"

namespace hlnet {

// Routes Halide's runtime errors to check_pipeline() instead of Halide's
// default abort. Call once at start-up.
void install_halide_error_handler();

// The last message of Halide's runtime since install_halide_error_handler()
// ("" if none), for programs that report a failed pipeline themselves.
const char *last_halide_error();

// Throws hlnet::Error naming the phase, the step and Halide's message when a
// pipeline returned non-zero.
void check_pipeline(int status, const char *phase, int64_t step);

// One model's memory: the five arenas, allocated once for the whole run (on
// the device when the pipelines run on one), and the generated step code that
// views them.
class Model {
public:
    Model();
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;

    const ModelInfo &info;
    Halide::Runtime::Buffer<float> params, grads, velocity, state;
    // Activations are addressed in bytes but held as floats: a 1-D buffer's
    // extent is an int32, and ResNet-18 at batch 256 needs more than 2 GiB.
    Halide::Runtime::Buffer<float> activations;
    Graph &graph() { return *graph_; }

    // Xavier-uniform weights from `seed` (std::mt19937_64 stream 0, in arena
    // order, each element (2u - 1) * sqrt(6 / (fan_in + fan_out)) with u from
    // Rng::uniform), biases and betas 0, gammas 1, running mean 0, running
    // variance 1; zero velocity.
    void initialize(uint64_t seed);
    // Weights and BN statistics from a checkpoint (velocity zero); returns its RunState.
    RunState load(const std::string &path);
    // load() plus the optimizer file's velocity: continues that run exactly.
    RunState resume(const std::string &path);
    void save(const std::string &path, const RunState &run);

    // Device <-> host for the arenas the host reads or writes (initialisation,
    // checkpoints, tests); nothing on the host target.
    void upload();
    void download();

private:
    Arenas arenas_;
    std::unique_ptr<Graph> graph_;
};

// The index buffer of one batch, over a resident split.
struct BatchInput {
    BatchInput(Split &split, int batch);
    Split &split;
    Halide::Runtime::Buffer<int32_t> indices;  // (batch)
    Batch batch() { return {split.images.raw_buffer(), split.labels.raw_buffer(), indices.raw_buffer()}; }
};

// Rank 0's weights, BN statistics and velocity to every rank: all start equal.
void share_model(Model &model, const World &world);

// One training step of every rank together (data-parallel; with one rank,
// the plain step): each rank runs forward on its own slice of the global
// batch (the indices in `input`), then backward with the gradients averaged
// over the ranks as they complete, the update, and rank 0's BN running
// statistics sent to every rank (as PyTorch DDP broadcasts its buffers).
class TrainingStep {
public:
    // sync_batchnorm: the BN statistics of the global batch (--sync-bn), not each rank's.
    TrainingStep(Model &model, const World &world, bool sync_batchnorm = false);
    // Forward in training mode; every rank's metrics, by rank (gathered).
    std::vector<Metrics> forward(BatchInput &input, int64_t step);
    // Backward, with the gradients averaged over the ranks as they complete.
    void backward(int64_t step);
    // The update, then rank 0's BN statistics to every rank.
    void update(float lr, float momentum, float weight_decay, int64_t step);
    int buckets() const { return averager_.buckets(); }

private:
    Model &model_;
    const World &world_;
    GradientAverager averager_;
    BatchNormStatistics global_batchnorm_;
};

// Test accuracy over every image of `split`, BN in inference mode, each rank
// taking its slice of every global batch; the last batch is padded with its
// last image and masked with `valid`.
double evaluate(Model &model, BatchInput &input, const World &world);

// The trainer program (after the flags are parsed) on this rank; returns the
// exit status.
int run_trainer(const TrainOptions &options, const World &world);

}  // namespace hlnet
