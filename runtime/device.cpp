#include "device.h"

#if defined(HLNET_TARGET_CUDA)
#include "HalideRuntimeCuda.h"
#elif defined(HLNET_TARGET_OPENCL)
#include "HalideRuntimeOpenCL.h"
#endif

namespace hlnet {

const halide_device_interface_t *pipeline_device() {
#if defined(HLNET_TARGET_CUDA)
    return halide_cuda_device_interface();
#elif defined(HLNET_TARGET_OPENCL)
    return halide_opencl_device_interface();
#else
    return nullptr;
#endif
}

}  // namespace hlnet
