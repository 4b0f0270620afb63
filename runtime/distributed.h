// Data-parallel training over MPI: the processes of one run (its ranks), the
// few collectives the trainer needs, and the gradient average that overlaps
// backward. Started without mpirun, or built without MPI, the world is this one
// process and every collective is a no-op.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graph_api.h"

namespace hlnet {

class World {
public:
    // Joins the MPI job when mpirun started this process (its environment
    // says so); otherwise a world of one, without MPI. Throws hlnet::Error
    // when started by mpirun in a build without MPI.
    World();
    ~World();  // MPI_Finalize
    World(const World &) = delete;
    World &operator=(const World &) = delete;

    int rank() const { return rank_; }
    int size() const { return size_; }
    bool is_root() const { return rank_ == 0; }  // prints, logs and writes checkpoints

    // Collectives over every rank, blocking; no-ops in a world of one.
    void sum(double *values, int count) const;                // in place, the same result on every rank
    void broadcast(void *data, int64_t bytes) const;          // rank 0's bytes to every rank
    std::vector<double> gather(const double *mine, int count) const;  // every rank's `count` values, by rank

    // Ends the whole job: prints "hlnet: rank R: message" (one line), then
    // MPI_Abort, which stops every rank with a non-zero status. In a world of
    // one, prints "hlnet: message" and exits 1.
    [[noreturn]] void abort(const std::string &message) const;

    // Seconds this rank has spent inside MPI (and NCCL) calls so far; on a
    // GPU, NCCL's part is the time to queue its work.
    double communication_seconds() const { return comm_seconds_; }

    // A cuda build with NCCL, started by mpirun: every rank runs its pipelines
    // on one GPU of its node (its rank among the node's ranks) and the
    // collectives on device arenas below go through NCCL, bootstrapped with
    // an id rank 0 sends over MPI. Queued on the stream the pipelines use, so
    // in order with them. Throw hlnet::Error when NCCL fails. (Environment
    // HLNET_NCCL_ONE_RANK: a process started without mpirun does the same
    // over itself, a smoke test of the path on one GPU.)
    bool on_device() const { return device_ != nullptr; }
    void average_on_device(halide_buffer_t *arena, int64_t first, int64_t count) const;  // floats, in place
    void broadcast_on_device(halide_buffer_t *arena) const;                                // rank 0's floats

private:
    friend class GradientAverager;
    struct Device;  // the NCCL communicator, made on first use (distributed.cpp)
    void use_gpu(int gpu, int node_ranks);
    int rank_ = 0, size_ = 1;
    bool mpi_ = false;
    mutable double comm_seconds_ = 0;
    std::unique_ptr<Device> device_;
};

// Averages the gradient arena over the ranks, in buckets of whole parameters
// (contiguous in the arena) of about kBucketFloats each: a bucket's
// non-blocking all-reduce starts as soon as backward has completed its last
// parameter (backward runs in reverse arena order, so the last bucket goes
// first), and MPI is driven between the pipelines that follow. finish()
// waits for the rest and divides by the number of ranks.
class GradientAverager : public GradientListener {
public:
    static constexpr int64_t kBucketFloats = int64_t(1) << 20;  // 4 MiB: ResNet-18's 11.2 M floats in 11 buckets

    // grads: the gradient arena, on the host, or on the device when world.on_device().
    GradientAverager(const World &world, const ModelInfo &info, halide_buffer_t *grads,
                     int64_t bucket_floats = kBucketFloats);
    ~GradientAverager();
    void ready(int param) override;
    void finish();  // every bucket reduced and averaged; ready for the next step
    int buckets() const { return int(buckets_.size()); }

private:
    struct Bucket {
        int64_t first = 0, count = 0;  // floats of the arena
        int params = 0, pending = 0;   // parameters in it, and those backward has yet to complete
        bool started = false;
    };
    struct Requests;  // one MPI_Request per bucket (distributed.cpp)
    void start(Bucket &b);
    void progress();

    const World &world_;
    halide_buffer_t *grads_;
    int64_t total_floats_;
    std::vector<Bucket> buckets_;
    std::vector<int> bucket_of_;  // by parameter index
    std::unique_ptr<Requests> requests_;
};

// Batch-norm statistics over the batches of every rank as one (--sync-bn):
// the ranks' moments combined exactly (equal counts: the mean of the means,
// and the mean of the variances plus the variance of the means, in double),
// the gradient sums added up. The same numbers on every rank. Without a
// world, each rank's batch alone: per_rank_batchnorm().
class BatchNormStatistics final : public BatchNormReducer {
public:
    explicit BatchNormStatistics(const World *world) : world_(world) {}
    int moments(halide_buffer_t *rank_mean, halide_buffer_t *rank_variance, int64_t count, halide_buffer_t *mean,
                halide_buffer_t *variance, halide_buffer_t *unbiased_variance) override;
    int gradient_means(halide_buffer_t *sum_dz, halide_buffer_t *sum_dz_xhat, int64_t count, halide_buffer_t *mean_dz,
                       halide_buffer_t *mean_dz_xhat) override;

private:
    const World *world_;
    std::vector<double> mine_, out_a_, out_b_;  // scratch, kept between calls
};

}  // namespace hlnet
