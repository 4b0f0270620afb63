#include "cudnn_baseline.h"

#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <cuda_runtime.h>
#include <cudnn.h>

namespace hlnet_bench {

namespace {

// The legacy cuDNN API (cudnn_cnn.h, cudnn_ops.h: deprecated in cuDNN 9, still
// shipped), the one PyTorch's convolutions call. Choices, each stated in note():
// - algorithms: the fastest that cudnnFind*AlgorithmEx measures on the
//   bench's buffers (PyTorch's benchmark mode), with up to kWorkspaceBytes of
//   workspace;
// - math: CUDNN_FMA_MATH on the convolution descriptor, and only results Find
//   reports in non-tensor-op math: plain FP32 FMA, no TF32, as the Halide
//   pipelines compute;
// - batch norm: CUDNN_BATCHNORM_SPATIAL (statistics over N, H, W per channel),
//   eps and momentum as generators/batchnorm_generator.cpp;
// - timing: CUDA events around the call on the default stream: GPU time.
constexpr size_t kWorkspaceBytes = size_t(2) << 30;
constexpr double kEps = 1e-5;       // docs/SPEC.md, batchnorm
constexpr double kMomentum = 0.1;  // cuDNN's exponentialAverageFactor = PyTorch's momentum

// A failed CUDA or cuDNN call, "cudnnConvolutionForward: CUDNN_STATUS_NOT_SUPPORTED".
struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void check(cudaError_t status, const char *call) {
    if (status != cudaSuccess) throw Failure(std::string(call) + ": " + cudaGetErrorString(status));
}
void check(cudnnStatus_t status, const char *call) {
    if (status != CUDNN_STATUS_SUCCESS) throw Failure(std::string(call) + ": " + cudnnGetErrorString(status));
}
// CHECKED(cudnnCreate, &handle): the call; on failure, a Failure naming it.
#define CHECKED(function, ...) check(function(__VA_ARGS__), #function)

// Device memory for `count` floats, freed on every way out.
class DeviceArray {
public:
    explicit DeviceArray(size_t count) : bytes_(count * sizeof(float)) { CHECKED(cudaMalloc, &data_, bytes_); }
    // Uniform in [low, high), from `rng`: the time does not depend on the
    // values, but every input is a plausible one (no zeros, positive variances).
    DeviceArray(size_t count, std::mt19937 &rng, float low = -1, float high = 1) : DeviceArray(count) {
        std::uniform_real_distribution<float> dist(low, high);
        std::vector<float> host(count);
        for (float &v : host) v = dist(rng);
        CHECKED(cudaMemcpy, data_, host.data(), bytes_, cudaMemcpyHostToDevice);
    }
    ~DeviceArray() { cudaFree(data_); }
    DeviceArray(const DeviceArray &) = delete;
    DeviceArray &operator=(const DeviceArray &) = delete;
    float *get() const { return static_cast<float *>(data_); }

private:
    void *data_ = nullptr;
    size_t bytes_;
};

// Descriptors and events, destroyed on every way out.
using TensorDesc = std::unique_ptr<cudnnTensorStruct, decltype(&cudnnDestroyTensorDescriptor)>;
using FilterDesc = std::unique_ptr<cudnnFilterStruct, decltype(&cudnnDestroyFilterDescriptor)>;
using ConvDesc = std::unique_ptr<cudnnConvolutionStruct, decltype(&cudnnDestroyConvolutionDescriptor)>;
using Event = std::unique_ptr<CUevent_st, decltype(&cudaEventDestroy)>;

TensorDesc tensor_desc() {
    cudnnTensorDescriptor_t d = nullptr;
    CHECKED(cudnnCreateTensorDescriptor, &d);
    return {d, cudnnDestroyTensorDescriptor};
}

TensorDesc nchw(int n, int c, int h, int w) {
    TensorDesc d = tensor_desc();
    CHECKED(cudnnSetTensor4dDescriptor, d.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w);
    return d;
}

FilterDesc oihw(int o, int i, int h, int w) {
    cudnnFilterDescriptor_t d = nullptr;
    CHECKED(cudnnCreateFilterDescriptor, &d);
    FilterDesc owned(d, cudnnDestroyFilterDescriptor);
    CHECKED(cudnnSetFilter4dDescriptor, d, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, o, i, h, w);
    return owned;
}

// Zero padding `pad`, stride `stride`, no dilation; cross-correlation (the
// kernel not flipped, as hlnet and PyTorch); FP32 accumulation in FMA math.
ConvDesc convolution(int pad, int stride) {
    cudnnConvolutionDescriptor_t d = nullptr;
    CHECKED(cudnnCreateConvolutionDescriptor, &d);
    ConvDesc owned(d, cudnnDestroyConvolutionDescriptor);
    CHECKED(cudnnSetConvolution2dDescriptor, d, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
    CHECKED(cudnnSetConvolutionMathType, d, CUDNN_FMA_MATH);
    return owned;
}

Event event() {
    cudaEvent_t e = nullptr;
    CHECKED(cudaEventCreate, &e);
    return {e, cudaEventDestroy};
}

// Median GPU time of `call` (which enqueues one call on the default stream),
// as timed_calls() says: one warm-up, then `reps` timed calls or fewer.
Measurement time_calls(const std::function<void()> &call, int reps, double max_seconds) {
    Event start = event(), stop = event();
    auto timed_ms = [&] {
        CHECKED(cudaEventRecord, start.get(), nullptr);
        call();
        CHECKED(cudaEventRecord, stop.get(), nullptr);
        CHECKED(cudaEventSynchronize, stop.get());
        float ms = 0;
        CHECKED(cudaEventElapsedTime, &ms, start.get(), stop.get());
        return double(ms);
    };
    const double first_ms = timed_ms();
    std::vector<double> ms;
    for (int r = timed_calls(reps, first_ms / 1e3, max_seconds); r > 0; r--) ms.push_back(timed_ms());
    Measurement m;
    m.valid = true;
    m.ms = median(ms);
    return m;
}

// Find's results come sorted by time: the first that ran, in FMA math.
template <typename Perf>
Perf fastest(const Perf *results, int count, const char *find) {
    for (int i = 0; i < count; i++)
        if (results[i].status == CUDNN_STATUS_SUCCESS && results[i].mathType != CUDNN_TENSOR_OP_MATH &&
            results[i].mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
            return results[i];
    throw Failure(std::string(find) + ": no algorithm ran in FP32 FMA math");
}

// A library's parameters, "n32 ci1 co8 h28 w28 k7 s2 p3": name -> value.
class Shape {
public:
    explicit Shape(const std::string &text) : text_(text) {
        std::istringstream words(text);
        for (std::string word; words >> word;) {
            const size_t digits = word.find_first_of("0123456789");
            if (digits != std::string::npos) values_[word.substr(0, digits)] = std::stoi(word.substr(digits));
        }
    }
    int operator[](const char *name) const {
        const auto it = values_.find(name);
        if (it == values_.end()) throw Failure("shape '" + text_ + "' has no parameter " + name);
        return it->second;
    }

private:
    std::string text_;
    std::map<std::string, int> values_;
};

// conv2d_forward: y = conv(x, w); conv2d_backward_data: dx from dy and w;
// conv2d_backward_weights: dw from x and dy. NCHW, OIHW, H and W the input's.
Measurement time_convolution(cudnnHandle_t handle, const std::string &generator, const Shape &p, int reps,
                             double max_seconds) {
    const int n = p["n"], ci = p["ci"], co = p["co"], h = p["h"], w = p["w"], k = p["k"];
    const ConvDesc conv = convolution(p["p"], p["s"]);
    const TensorDesc x_desc = nchw(n, ci, h, w);
    const FilterDesc w_desc = oihw(co, ci, k, k);
    int yn = 0, yc = 0, yh = 0, yw = 0;
    CHECKED(cudnnGetConvolution2dForwardOutputDim, conv.get(), x_desc.get(), w_desc.get(), &yn, &yc, &yh, &yw);
    const TensorDesc y_desc = nchw(yn, yc, yh, yw);
    // Each direction reads two of x, w, y and writes the third (dx, dy, dw have their shapes).
    std::mt19937 rng(1);
    DeviceArray x(size_t(n) * ci * h * w, rng), weights(size_t(co) * ci * k * k, rng), y(size_t(yn) * yc * yh * yw, rng);
    DeviceArray workspace(kWorkspaceBytes / sizeof(float));
    const float one = 1, zero = 0;
    int found = 0;
    if (generator == "conv2d_forward") {
        cudnnConvolutionFwdAlgoPerf_t results[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        CHECKED(cudnnFindConvolutionForwardAlgorithmEx, handle, x_desc.get(), x.get(), w_desc.get(), weights.get(),
                conv.get(), y_desc.get(), y.get(), CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &found, results, workspace.get(),
                kWorkspaceBytes);
        const auto algo = fastest(results, found, "cudnnFindConvolutionForwardAlgorithmEx");
        return time_calls([&] {
            CHECKED(cudnnConvolutionForward, handle, &one, x_desc.get(), x.get(), w_desc.get(), weights.get(), conv.get(),
                    algo.algo, workspace.get(), algo.memory, &zero, y_desc.get(), y.get());
        }, reps, max_seconds);
    }
    if (generator == "conv2d_backward_data") {
        cudnnConvolutionBwdDataAlgoPerf_t results[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        CHECKED(cudnnFindConvolutionBackwardDataAlgorithmEx, handle, w_desc.get(), weights.get(), y_desc.get(), y.get(),
                conv.get(), x_desc.get(), x.get(), CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &found, results,
                workspace.get(), kWorkspaceBytes);
        const auto algo = fastest(results, found, "cudnnFindConvolutionBackwardDataAlgorithmEx");
        return time_calls([&] {
            CHECKED(cudnnConvolutionBackwardData, handle, &one, w_desc.get(), weights.get(), y_desc.get(), y.get(),
                    conv.get(), algo.algo, workspace.get(), algo.memory, &zero, x_desc.get(), x.get());
        }, reps, max_seconds);
    }
    cudnnConvolutionBwdFilterAlgoPerf_t results[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    CHECKED(cudnnFindConvolutionBackwardFilterAlgorithmEx, handle, x_desc.get(), x.get(), y_desc.get(), y.get(),
            conv.get(), w_desc.get(), weights.get(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &found, results,
            workspace.get(), kWorkspaceBytes);
    const auto algo = fastest(results, found, "cudnnFindConvolutionBackwardFilterAlgorithmEx");
    return time_calls([&] {
        CHECKED(cudnnConvolutionBackwardFilter, handle, &one, x_desc.get(), x.get(), y_desc.get(), y.get(), conv.get(),
                algo.algo, workspace.get(), algo.memory, &zero, w_desc.get(), weights.get());
    }, reps, max_seconds);
}

// batchnorm_train: y, the saved statistics and the running ones from x;
// batchnorm_backward: dx, dgamma, dbeta from x, dy and the saved statistics.
Measurement time_batchnorm(cudnnHandle_t handle, const std::string &generator, const Shape &p, int reps,
                           double max_seconds) {
    const int n = p["n"], c = p["c"], h = p["h"], w = p["w"];
    const TensorDesc x_desc = nchw(n, c, h, w), stats_desc = tensor_desc();  // stats: 1 x C x 1 x 1
    CHECKED(cudnnDeriveBNTensorDescriptor, stats_desc.get(), x_desc.get(), CUDNN_BATCHNORM_SPATIAL);
    std::mt19937 rng(1);
    const size_t size = size_t(n) * c * h * w;
    DeviceArray x(size, rng), y(size), dy(size, rng), dx(size);
    DeviceArray gamma(c, rng), beta(c, rng), running_mean(c, rng), running_var(c, rng, 0.5f, 1.5f);
    DeviceArray saved_mean(c), saved_inv_std(c), d_gamma(c), d_beta(c);
    const float one = 1, zero = 0;
    auto forward = [&] {
        CHECKED(cudnnBatchNormalizationForwardTraining, handle, CUDNN_BATCHNORM_SPATIAL, &one, &zero, x_desc.get(),
                x.get(), x_desc.get(), y.get(), stats_desc.get(), gamma.get(), beta.get(), kMomentum,
                running_mean.get(), running_var.get(), kEps, saved_mean.get(), saved_inv_std.get());
    };
    if (generator == "batchnorm_train") return time_calls(forward, reps, max_seconds);
    forward();  // the saved statistics the backward pass reads
    return time_calls([&] {
        CHECKED(cudnnBatchNormalizationBackward, handle, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero,
                x_desc.get(), x.get(), x_desc.get(), dy.get(), x_desc.get(), dx.get(), stats_desc.get(), gamma.get(),
                d_gamma.get(), d_beta.get(), kEps, saved_mean.get(), saved_inv_std.get());
    }, reps, max_seconds);
}

}  // namespace

std::unique_ptr<CudnnBaseline> CudnnBaseline::open() {
    try {
        int devices = 0;
        CHECKED(cudaGetDeviceCount, &devices);
        if (devices == 0) throw Failure("cudaGetDeviceCount: no CUDA device");
        CHECKED(cudaSetDevice, 0);  // Halide's CUDA runtime also takes device 0 unless HL_GPU_DEVICE says otherwise
        cudnnHandle_t handle = nullptr;
        CHECKED(cudnnCreate, &handle);
        return std::unique_ptr<CudnnBaseline>(new CudnnBaseline(handle));
    } catch (const Failure &e) {
        std::fprintf(stderr, "no cuDNN column: %s\n", e.what());
        return nullptr;
    }
}

CudnnBaseline::~CudnnBaseline() { cudnnDestroy(handle_); }

std::string CudnnBaseline::device_name() const {
    cudaDeviceProp prop{};
    return cudaGetDeviceProperties(&prop, 0) == cudaSuccess ? prop.name : "unknown GPU";
}

double CudnnBaseline::fp32_peak_gflops() const {
    int sms = 0, khz = 0, major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0) != cudaSuccess)
        return 0;
    // FP32 lanes per SM: 64 on Volta, Turing and the A100 (7.x, 8.0), 128 from 8.6 on.
    const int lanes = major < 8 || (major == 8 && minor == 0) ? 64 : 128;
    return double(sms) * lanes * 2 * khz / 1e6;
}

std::string CudnnBaseline::note() const {
    const size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch (cuDNN 9)
    char text[640];
    std::snprintf(text, sizeof text,
                  "cuDNN column: cuDNN %zu.%zu.%zu, NCHW float32; each convolution in the fastest algorithm that "
                  "cudnnFind*AlgorithmEx measured in CUDNN_FMA_MATH (FP32 FMA, no TF32; workspace up to %zu GiB), batch "
                  "norm in CUDNN_BATCHNORM_SPATIAL, eps %g. GPU time by CUDA events (the Halide columns: wall time up to "
                  "the device sync); not checked against manual; without what the Halide pipelines fuse (the convolution "
                  "bias and its gradient, batch norm's residual add and ReLU).",
                  v / 10000, v / 100 % 100, v % 100, kWorkspaceBytes >> 30, kEps);
    return text;
}

std::optional<Measurement> CudnnBaseline::measure(const std::string &generator, const std::string &shape, int reps,
                                                  double max_seconds) {
    const bool convolution = generator == "conv2d_forward" || generator == "conv2d_backward_data" ||
                             generator == "conv2d_backward_weights";
    const bool batchnorm = generator == "batchnorm_train" || generator == "batchnorm_backward";
    if (!convolution && !batchnorm) return std::nullopt;
    try {
        const Shape p(shape);
        return convolution ? time_convolution(handle_, generator, p, reps, max_seconds)
                           : time_batchnorm(handle_, generator, p, reps, max_seconds);
    } catch (const Failure &e) {
        Measurement m;
        m.problem = std::string("error: ") + e.what();
        return m;
    }
}

}  // namespace hlnet_bench
