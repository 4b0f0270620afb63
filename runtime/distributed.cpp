#include "distributed.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "error.h"

#ifdef HLNET_MPI
#include <mpi.h>
#endif
#ifdef HLNET_NCCL
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>

#include "HalideRuntimeCuda.h"
#endif

namespace hlnet {

namespace {

// mpirun (Open MPI, or any PMI/PMIx launcher) tells its processes so in their environment.
bool started_by_mpirun() {
    for (const char *name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
        if (std::getenv(name)) return true;
    return false;
}

// Adds the seconds of its own lifetime to a counter: the time spent in MPI.
class Timed {
public:
    explicit Timed(double &total) : total_(total), start_(std::chrono::steady_clock::now()) {}
    ~Timed() { total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

private:
    double &total_;
    std::chrono::steady_clock::time_point start_;
};

float *host_floats(halide_buffer_t *b) { return reinterpret_cast<float *>(b->host); }

}  // namespace

#ifdef HLNET_NCCL

namespace {

// Halide's CUDA runtime makes a context of its own, whose memory NCCL (on the
// CUDA runtime API, in the device's primary context) cannot address: this
// hook puts every pipeline in the primary context of Halide's device instead.
// The driver comes through dlopen, as in Halide's runtime, so that the
// trainer still starts, and says what is missing, where there is no driver.
int acquire_primary_context(void *, void **context, bool create) {
    static std::string failure;
    static void *primary = [] {
        using Init = int (*)(unsigned);
        using DeviceGet = int (*)(int *, int);
        using Retain = int (*)(void **, int);
        void *driver = dlopen("libcuda.so.1", RTLD_LAZY);
        if (!driver) {
            failure = "CUDA: no driver (libcuda.so.1 cannot be loaded)";
            return static_cast<void *>(nullptr);
        }
        const auto init = reinterpret_cast<Init>(dlsym(driver, "cuInit"));
        const auto device_get = reinterpret_cast<DeviceGet>(dlsym(driver, "cuDeviceGet"));
        const auto retain = reinterpret_cast<Retain>(dlsym(driver, "cuDevicePrimaryCtxRetain"));
        const int gpu = halide_get_gpu_device(nullptr);
        int device = 0, status = -1;
        void *ctx = nullptr;
        if (init && device_get && retain && (status = init(0)) == 0 && (status = device_get(&device, gpu)) == 0)
            status = retain(&ctx, device);
        if (status != 0) failure = strprintf("CUDA: no primary context on GPU %d (driver error %d)", gpu, status);
        return status == 0 ? ctx : nullptr;
    }();
    *context = primary;
    if (primary || !create) return halide_error_code_success;
    halide_error(nullptr, failure.c_str());
    return halide_error_code_generic_error;
}

void check_nccl(ncclResult_t result, const char *call) {
    if (result != ncclSuccess) fail("NCCL: %s failed: %s", call, ncclGetErrorString(result));
}

}  // namespace

struct World::Device {
    int gpu = 0, node_ranks = 1;
    ncclComm_t comm = nullptr;

    ~Device() {
        if (comm) ncclCommDestroy(comm);
    }

    // Made on the first collective, which every rank reaches together.
    ncclComm_t communicator(const World &world) {
        if (comm) return comm;
        int gpus = 0;
        if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) fail("NCCL: no CUDA device on this node");
        if (cudaSetDevice(gpu) != cudaSuccess)
            fail("NCCL: cannot use GPU %d: %d ranks on this node, %d GPUs (one rank per GPU)", gpu, node_ranks, gpus);
        ncclUniqueId id{};
        if (world.is_root()) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
        world.broadcast(&id, sizeof id);
        check_nccl(ncclCommInitRank(&comm, world.size(), id, world.rank()), "ncclCommInitRank");
        int version = 0;
        ncclGetVersion(&version);
        if (world.is_root())
            std::printf("gradients averaged on the GPUs by NCCL %d.%d.%d over %d rank(s)\n", version / 10000,
                        version / 100 % 100, version % 100, world.size());
        return comm;
    }
};

void World::average_on_device(halide_buffer_t *arena, int64_t first, int64_t count) const {
    Timed t(comm_seconds_);
    float *base = reinterpret_cast<float *>(halide_cuda_get_device_ptr(nullptr, arena)) + first;
    check_nccl(ncclAllReduce(base, base, size_t(count), ncclFloat, ncclAvg, device_->communicator(*this), nullptr),
               "ncclAllReduce");
}

void World::broadcast_on_device(halide_buffer_t *arena) const {
    Timed t(comm_seconds_);
    void *base = reinterpret_cast<void *>(halide_cuda_get_device_ptr(nullptr, arena));
    check_nccl(ncclBroadcast(base, base, size_t(arena->number_of_elements()), ncclFloat, 0,
                             device_->communicator(*this), nullptr),
               "ncclBroadcast");
}

#else

struct World::Device {};

void World::average_on_device(halide_buffer_t *, int64_t, int64_t) const { fail("this build has no NCCL"); }

void World::broadcast_on_device(halide_buffer_t *) const { fail("this build has no NCCL"); }

#endif  // HLNET_NCCL

#ifdef HLNET_MPI

// This rank's GPU is its rank among the ranks of its node; every pipeline
// runs in that GPU's primary context. Before any pipeline runs.
void World::use_gpu(int gpu, int node_ranks) {
#ifdef HLNET_NCCL
    device_ = std::make_unique<Device>();
    device_->gpu = gpu;
    device_->node_ranks = node_ranks;
    halide_set_gpu_device(gpu);
    halide_set_cuda_acquire_context(acquire_primary_context);
#else
    (void)gpu, (void)node_ranks;
#endif
}

World::World() {
    if (!started_by_mpirun()) {
        // One process averaging over itself through NCCL: gpu_check.sh's smoke test.
        if (std::getenv("HLNET_NCCL_ONE_RANK")) use_gpu(0, 1);
        return;
    }
    int provided = 0;
    // Only this thread calls MPI; Halide's worker threads never do.
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        fail("MPI_Init_thread failed");
    mpi_ = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
#ifdef HLNET_NCCL
    MPI_Comm node;
    int node_rank = 0, node_ranks = 1;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_size(node, &node_ranks);
    MPI_Comm_free(&node);
    use_gpu(node_rank, node_ranks);
#endif
}

World::~World() {
    device_.reset();  // NCCL before MPI
    if (mpi_) MPI_Finalize();
}

void World::sum(double *values, int count) const {
    if (size_ == 1) return;
    Timed t(comm_seconds_);
    MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

void World::broadcast(void *data, int64_t bytes) const {
    if (size_ == 1) return;
    Timed t(comm_seconds_);
    for (int64_t at = 0; at < bytes; at += INT_MAX)  // MPI counts are ints
        MPI_Bcast(static_cast<char *>(data) + at, int(std::min<int64_t>(INT_MAX, bytes - at)), MPI_BYTE, 0,
                  MPI_COMM_WORLD);
}

std::vector<double> World::gather(const double *mine, int count) const {
    std::vector<double> all(size_t(count) * size_t(size_));
    if (size_ == 1) return std::vector<double>(mine, mine + count);
    Timed t(comm_seconds_);
    MPI_Allgather(mine, count, MPI_DOUBLE, all.data(), count, MPI_DOUBLE, MPI_COMM_WORLD);
    return all;
}

void World::abort(const std::string &message) const {
    std::fflush(stdout);
    if (!mpi_) {
        std::fprintf(stderr, "hlnet: %s\n", message.c_str());
        std::exit(1);
    }
    std::fprintf(stderr, "hlnet: rank %d of %d: %s\n", rank_, size_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::exit(1);  // not reached
}

struct GradientAverager::Requests {
    std::vector<MPI_Request> of_bucket;
};

void GradientAverager::start(Bucket &b) {
    b.started = true;
    if (world_.on_device()) return world_.average_on_device(grads_, b.first, b.count);  // one rank too: a smoke test
    if (world_.size() == 1) return;
    Timed t(world_.comm_seconds_);
    const size_t i = size_t(&b - buckets_.data());
    MPI_Iallreduce(MPI_IN_PLACE, host_floats(grads_) + b.first, int(b.count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                   &requests_->of_bucket[i]);
}

// Open MPI moves a non-blocking collective on only inside MPI calls: one
// here between two pipelines keeps the reductions going during backward.
void GradientAverager::progress() {
    if (world_.size() == 1 || world_.on_device()) return;
    Timed t(world_.comm_seconds_);
    int done = 0;
    MPI_Testall(int(requests_->of_bucket.size()), requests_->of_bucket.data(), &done, MPI_STATUSES_IGNORE);
}

void GradientAverager::finish() {
    for (Bucket &b : buckets_)
        if (!b.started) start(b);  // a gradient backward did not announce (or a graph without notes)
    if (world_.size() > 1 && !world_.on_device()) {  // NCCL averages (ncclAvg) in stream order
        {
            Timed t(world_.comm_seconds_);
            MPI_Waitall(int(requests_->of_bucket.size()), requests_->of_bucket.data(), MPI_STATUSES_IGNORE);
        }
        const float scale = 1.0f / float(world_.size());
        float *grads = host_floats(grads_);
        for (int64_t i = 0; i < total_floats_; i++) grads[i] *= scale;
    }
    for (Bucket &b : buckets_) b.pending = b.params, b.started = false;
}

#else  // no MPI in this build: a world of one

World::World() {
    if (started_by_mpirun())
        fail("started by mpirun, but this build has no MPI, so data-parallel training is off "
             "(install libopenmpi-dev and openmpi-bin, then rebuild)");
}

World::~World() = default;

void World::sum(double *, int) const {}

void World::broadcast(void *, int64_t) const {}

std::vector<double> World::gather(const double *mine, int count) const { return {mine, mine + count}; }

void World::abort(const std::string &message) const {
    std::fflush(stdout);
    std::fprintf(stderr, "hlnet: %s\n", message.c_str());
    std::exit(1);
}

struct GradientAverager::Requests {};

void GradientAverager::start(Bucket &b) { b.started = true; }

void GradientAverager::progress() {}

void GradientAverager::finish() {
    for (Bucket &b : buckets_) b.pending = b.params, b.started = false;
}

#endif

GradientAverager::GradientAverager(const World &world, const ModelInfo &info, halide_buffer_t *grads,
                                   int64_t bucket_floats)
    : world_(world), grads_(grads), total_floats_(info.param_floats), bucket_of_(size_t(info.num_params)),
      requests_(std::make_unique<Requests>()) {
    // Parameters in arena order; a bucket closes once it holds bucket_floats.
    std::vector<int> order(size_t(info.num_params));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return info.params[a].offset < info.params[b].offset; });
    for (int p : order) {
        const int64_t offset = info.params[p].offset;
        if (buckets_.empty() || offset - buckets_.back().first >= bucket_floats) {
            // The bucket before runs up to here (alignment padding included).
            if (!buckets_.empty()) buckets_.back().count = offset - buckets_.back().first;
            buckets_.push_back({buckets_.empty() ? 0 : offset, 0, 0, 0, false});
        }
        buckets_.back().params++;
        bucket_of_[size_t(p)] = int(buckets_.size()) - 1;
    }
    if (!buckets_.empty()) buckets_.back().count = total_floats_ - buckets_.back().first;
    for (Bucket &b : buckets_) b.pending = b.params;
#ifdef HLNET_MPI
    requests_->of_bucket.assign(buckets_.size(), MPI_REQUEST_NULL);
#endif
}

GradientAverager::~GradientAverager() = default;

void GradientAverager::ready(int param) {
    Bucket &b = buckets_.at(size_t(bucket_of_.at(size_t(param))));
    if (--b.pending == 0) start(b);
    progress();
}

namespace {

// A per-channel vector of floats as doubles, from the device first where it lives there.
int read_channels(halide_buffer_t *b, double *to) {
    if (int rc = halide_copy_to_host(nullptr, b)) return rc;
    const float *host = reinterpret_cast<const float *>(b->host);
    for (int c = 0; c < b->dim[0].extent; c++) to[c] = host[c];
    return 0;
}

// Written on the host; the next pipeline to read it copies it to the device.
void write_channels(halide_buffer_t *b, const double *from) {
    float *host = reinterpret_cast<float *>(b->host);
    for (int c = 0; c < b->dim[0].extent; c++) host[c] = float(from[c]);
    b->set_device_dirty(false);
    b->set_host_dirty(true);
}

}  // namespace

int BatchNormStatistics::moments(halide_buffer_t *rank_mean, halide_buffer_t *rank_variance, int64_t count,
                                 halide_buffer_t *mean, halide_buffer_t *variance, halide_buffer_t *unbiased_variance) {
    const int channels = rank_mean->dim[0].extent;
    mine_.resize(2 * size_t(channels));
    if (int rc = read_channels(rank_mean, mine_.data())) return rc;
    if (int rc = read_channels(rank_variance, mine_.data() + channels)) return rc;
    const int ranks = world_ ? world_->size() : 1;
    const std::vector<double> all = world_ ? world_->gather(mine_.data(), 2 * channels) : mine_;
    out_a_.assign(size_t(channels), 0.0);  // mean
    out_b_.assign(size_t(channels), 0.0);  // biased variance
    for (int r = 0; r < ranks; r++)
        for (int c = 0; c < channels; c++) out_a_[c] += all[size_t(r) * 2 * channels + c] / ranks;
    for (int r = 0; r < ranks; r++)
        for (int c = 0; c < channels; c++) {
            const double m = all[size_t(r) * 2 * channels + c], v = all[size_t(r) * 2 * channels + channels + c];
            out_b_[c] += (v + (m - out_a_[c]) * (m - out_a_[c])) / ranks;
        }
    write_channels(mean, out_a_.data());
    write_channels(variance, out_b_.data());
    const double values = double(count) * ranks;
    for (double &v : out_b_) v *= values / std::max(values - 1, 1.0);
    write_channels(unbiased_variance, out_b_.data());
    return 0;
}

int BatchNormStatistics::gradient_means(halide_buffer_t *sum_dz, halide_buffer_t *sum_dz_xhat, int64_t count,
                                        halide_buffer_t *mean_dz, halide_buffer_t *mean_dz_xhat) {
    const int channels = sum_dz->dim[0].extent;
    mine_.resize(2 * size_t(channels));
    if (int rc = read_channels(sum_dz, mine_.data())) return rc;
    if (int rc = read_channels(sum_dz_xhat, mine_.data() + channels)) return rc;
    if (world_) world_->sum(mine_.data(), 2 * channels);
    const double values = double(count) * (world_ ? world_->size() : 1);
    for (double &v : mine_) v /= values;
    write_channels(mean_dz, mine_.data());
    write_channels(mean_dz_xhat, mine_.data() + channels);
    return 0;
}

BatchNormReducer &per_rank_batchnorm() {
    static BatchNormStatistics per_rank(nullptr);
    return per_rank;
}

}  // namespace hlnet
