# One ahead-of-time Halide library per distinct op instance, for the build's
# target, all sharing one Halide runtime.

if(HLNET_TARGET STREQUAL "host")
  set(HLNET_HALIDE_TARGET host)
elseif(HLNET_TARGET STREQUAL "cuda")
  # Highest capability Halide 21 offers up to 90; the driver JITs the PTX for newer cards.
  set(HLNET_HALIDE_TARGET host-cuda-cuda_capability_80)
elseif(HLNET_TARGET STREQUAL "opencl")
  set(HLNET_HALIDE_TARGET host-opencl)
else()
  message(FATAL_ERROR "HLNET_TARGET must be host, cuda or opencl (got '${HLNET_TARGET}')")
endif()

# Halide's sampling profiler in every pipeline: a per-pipeline, per-Func time
# report when the program exits (CPU targets; see HALIDE14.md 5.6).
option(HLNET_PROFILE "Build every pipeline with Halide's profiler" OFF)
set(hlnet_pipeline_features "")
if(HLNET_PROFILE)
  set(hlnet_pipeline_features FEATURES profile)
endif()

add_halide_runtime(hlnet_halide_runtime TARGETS ${HLNET_HALIDE_TARGET})
add_custom_target(hlnet_all_pipelines)  # every pipeline library, e.g. to check that all compile

# hlnet_pipeline(<library> <generator> <PARAM=VALUE>...)
# Appends <library> to HLNET_CURRENT_PIPELINES in the caller's scope. A library
# is defined once, however many specs or tests use the same op instance.
function(hlnet_pipeline lib generator)
  set(HLNET_CURRENT_PIPELINES ${HLNET_CURRENT_PIPELINES} ${lib} PARENT_SCOPE)
  if(TARGET ${lib})
    return()
  endif()
  add_halide_library(${lib} FROM hlnet_generators
    GENERATOR ${generator}
    FUNCTION_NAME ${lib}
    TARGETS ${HLNET_HALIDE_TARGET}
    USE_RUNTIME hlnet_halide_runtime
    ${hlnet_pipeline_features}
    PARAMS ${ARGN})
  add_dependencies(hlnet_all_pipelines ${lib})
endfunction()
