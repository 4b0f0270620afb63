# One ahead-of-time Halide library per distinct op instance and schedule
# variant, for the build's target, all sharing one Halide runtime.

set(HLNET_HOST_TARGET host CACHE STRING
    "Halide target of HLNET_TARGET=host: host (this CPU), or another, e.g. x86-64-linux-avx-avx2-f16c-fma-sse41 for AVX2-only x86, arm-64-linux for a cross build")
if(CMAKE_CROSSCOMPILING AND HLNET_HOST_TARGET STREQUAL "host")
  message(FATAL_ERROR "cross-compiling for ${CMAKE_SYSTEM_PROCESSOR}: set HLNET_HOST_TARGET to its Halide target "
                      "(arm-64-linux for aarch64); 'host' is the build machine")
endif()
if(HLNET_TARGET STREQUAL "host")
  set(HLNET_HALIDE_TARGET ${HLNET_HOST_TARGET})
elseif(HLNET_TARGET STREQUAL "cuda")
  # Highest capability Halide 21 offers up to 90; the driver JITs the PTX for newer cards.
  set(HLNET_HALIDE_TARGET host-cuda-cuda_capability_80)
elseif(HLNET_TARGET STREQUAL "opencl")
  set(HLNET_HALIDE_TARGET host-opencl)
else()
  message(FATAL_ERROR "HLNET_TARGET must be host, cuda or opencl (got '${HLNET_TARGET}')")
endif()

# The vector ISA whose FMA peak the benches divide by: the CPU pipelines'. An
# AVX2 build on an AVX-512 machine measures the AVX2 peak, which on cores with
# 512-bit FMA units (Zen 5) is half the AVX-512 one (bench/fma_peak.cpp).
set(HLNET_FMA_PEAK_ISA "")
if(HLNET_TARGET STREQUAL "host" AND HLNET_HALIDE_TARGET MATCHES "^x86-64-.*avx2"
   AND NOT HLNET_HALIDE_TARGET MATCHES "avx512")
  set(HLNET_FMA_PEAK_ISA avx2)
endif()
# Adds the FMA peak measurement (bench/fma_peak.cpp) to a bench executable.
function(hlnet_add_fma_peak target)
  target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/bench/fma_peak.cpp)
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/bench)
  if(HLNET_FMA_PEAK_ISA)
    target_compile_definitions(${target} PRIVATE HLNET_FMA_PEAK_ISA="${HLNET_FMA_PEAK_ISA}")
  endif()
endfunction()

# Halide's sampling profiler in every pipeline: a per-pipeline, per-Func time
# report when the program exits (CPU targets; see HALIDE14.md 5.6).
option(HLNET_PROFILE "Build every pipeline with Halide's profiler" OFF)
set(hlnet_pipeline_features "")
if(HLNET_PROFILE)
  set(hlnet_pipeline_features FEATURES profile)
endif()

# --- schedule variants ---------------------------------------------------------
# "manual" is the generators' own schedules; the others are Halide 21's
# autoschedulers, run on the same generators. Each spec's pipelines are built
# once per variant in HLNET_BUILT_SCHEDULES; the trainer picks one at run time
# (--schedule) and NAME_pipelines_bench compares them.
set(HLNET_SCHEDULES manual CACHE STRING
    "Schedule variants to build: manual, Mullapudi2016, Li2018, Adams2019, Anderson2021 (a ;-list)")
set(hlnet_known_schedules manual Mullapudi2016 Li2018 Adams2019 Anderson2021)
# Where Halide 21.0.0 cannot produce every pipeline for the target:
# Anderson2021 schedules GPUs only; Adams2019 schedules CPUs only (on a GPU
# target it would leave every stage on the host); Mullapudi2016's experimental
# GPU mode (autoscheduler.experimental_gpu_schedule=1) aborts on
# conv2d_backward_data ("In schedule for acc_00.update(0), could not find var
# kb_i to reorder"), though it compiles conv2d_forward, batch norm and pooling.
if(HLNET_TARGET STREQUAL "host")
  set(hlnet_skip_Anderson2021 "it schedules GPUs only")
else()
  set(hlnet_skip_Adams2019 "it schedules CPUs only")
  set(hlnet_skip_Mullapudi2016 "its experimental GPU mode aborts on conv2d_backward_data")
endif()

set(HLNET_BUILT_SCHEDULES manual)  # always: the reference every variant is checked against
foreach(schedule IN LISTS HLNET_SCHEDULES)
  if(NOT schedule IN_LIST hlnet_known_schedules)
    message(FATAL_ERROR "HLNET_SCHEDULES: unknown schedule '${schedule}' (known: ${hlnet_known_schedules})")
  elseif(DEFINED hlnet_skip_${schedule})
    message(STATUS "hlnet: skipping schedule ${schedule} for HLNET_TARGET=${HLNET_TARGET}: ${hlnet_skip_${schedule}}")
  elseif(NOT schedule IN_LIST HLNET_BUILT_SCHEDULES)
    list(APPEND HLNET_BUILT_SCHEDULES ${schedule})
  endif()
endforeach()
message(STATUS "hlnet: schedule variants built for the specs: ${HLNET_BUILT_SCHEDULES}")

# The library (and C function) of op instance <lib> in <schedule>: <lib> for
# manual, <lib>_<schedule in lower case> otherwise (the name specc's step code calls).
function(hlnet_variant_library out lib schedule)
  if(schedule STREQUAL "manual")
    set(${out} ${lib} PARENT_SCOPE)
  else()
    string(TOLOWER "${schedule}" lower)
    set(${out} ${lib}_${lower} PARENT_SCOPE)
  endif()
endfunction()

add_halide_runtime(hlnet_halide_runtime TARGETS ${HLNET_HALIDE_TARGET})
add_custom_target(hlnet_all_pipelines)  # every pipeline library, e.g. to check that all compile

# hlnet_pipeline(<library> <generator> <PARAM=VALUE>...)
# Defines <library> in every schedule of HLNET_PIPELINE_SCHEDULES (a variable of
# the caller: hlnet_add_spec sets it to HLNET_BUILT_SCHEDULES; unset, manual
# only, as the op tests want) and appends the libraries to
# HLNET_CURRENT_PIPELINES in the caller's scope. A library is defined once,
# however many specs or tests use the same op instance.
function(hlnet_pipeline lib generator)
  set(schedules ${HLNET_PIPELINE_SCHEDULES})
  if(NOT schedules)
    set(schedules manual)
  endif()
  set(libraries "")
  foreach(schedule IN LISTS schedules)
    hlnet_variant_library(variant ${lib} ${schedule})
    list(APPEND libraries ${variant})
    if(TARGET ${variant})
      continue()
    endif()
    set(autoscheduler "")
    if(NOT schedule STREQUAL "manual")
      set(autoscheduler AUTOSCHEDULER Halide::${schedule})
    endif()
    # GPU builds also write the lowered statement (<library>.stmt), whose
    # kernel launches tools/gpu_report.py reads.
    set(stmt "")
    if(NOT HLNET_TARGET STREQUAL "host")
      set(stmt STMT ${variant}_stmt)
    endif()
    add_halide_library(${variant} FROM hlnet_generators
      GENERATOR ${generator}
      FUNCTION_NAME ${variant}
      TARGETS ${HLNET_HALIDE_TARGET}
      USE_RUNTIME hlnet_halide_runtime
      ${hlnet_pipeline_features}
      ${autoscheduler}
      ${stmt}
      PARAMS ${ARGN})
    add_dependencies(hlnet_all_pipelines ${variant})
  endforeach()
  set(HLNET_CURRENT_PIPELINES ${HLNET_CURRENT_PIPELINES} ${libraries} PARENT_SCOPE)
endfunction()
