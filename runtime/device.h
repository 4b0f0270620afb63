// The device the build's pipelines run on (HLNET_TARGET), or none for the host.
#pragma once

#include "HalideRuntime.h"

namespace hlnet {

// nullptr for the host target; otherwise the interface that the arenas and the
// resident dataset are allocated with.
const halide_device_interface_t *pipeline_device();

}  // namespace hlnet
