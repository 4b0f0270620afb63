# hlnet_add_spec(<spec.json>): compile a model spec into its pipelines, its
# step code (<name>_graph), its trainer (<name>_train) and its benchmarks
# (<name>_bench: the training step; <name>_pipelines_bench: every pipeline in
# every schedule variant), all under ${CMAKE_BINARY_DIR}/<name>/.
#
# specc runs at configure time because the set of pipelines (CMake targets)
# depends on the spec. Editing a spec re-runs it on the next build; pipelines
# are named from their configuration, so only changed ones are recompiled.

set(HLNET_SPECC_BUILD ${CMAKE_BINARY_DIR}/_specc CACHE PATH
    "Where the configure-time specc is built (variant builds can share one)")
set(HLNET_SPECC ${HLNET_SPECC_BUILD}/specc)
file(GLOB_RECURSE hlnet_specc_sources CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/build_tools/specc/*.cpp ${CMAKE_SOURCE_DIR}/build_tools/specc/*.h)

# Build the host specc once per configure (incremental: a no-op when unchanged),
# with this build's compiler unless that one makes programs for another machine.
set(hlnet_specc_compiler -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER})
if(CMAKE_CROSSCOMPILING)
  set(hlnet_specc_compiler "")
endif()
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${CMAKE_SOURCE_DIR}/build_tools -B ${HLNET_SPECC_BUILD}
          -DCMAKE_BUILD_TYPE=Release ${hlnet_specc_compiler} -DHLNET_SPECC_ONLY=ON
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring specc failed:\n${out}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${HLNET_SPECC_BUILD} --target specc
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building specc failed:\n${out}")
endif()

# The cuDNN column of NAME_pipelines_bench (cuda build only, bench/cudnn_baseline.cpp):
# cuDNN's convolution and batch norm at the pipelines' shapes. Without cuDNN
# the benches build without the column.
if(HLNET_TARGET STREQUAL "cuda")
  find_package(CUDAToolkit)
  find_path(HLNET_CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES include)
  find_library(HLNET_CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib64 lib)
  if(CUDAToolkit_FOUND AND HLNET_CUDNN_INCLUDE_DIR AND HLNET_CUDNN_LIBRARY)
    message(STATUS "hlnet: cuDNN column in the pipelines benches: ${HLNET_CUDNN_LIBRARY}")
    add_library(hlnet_cudnn_baseline STATIC ${CMAKE_SOURCE_DIR}/bench/cudnn_baseline.cpp)
    target_include_directories(hlnet_cudnn_baseline PRIVATE ${HLNET_CUDNN_INCLUDE_DIR})
    # cudart linked statically: the GPU machine needs only the driver and libcudnn.
    target_link_libraries(hlnet_cudnn_baseline PRIVATE ${HLNET_CUDNN_LIBRARY} CUDA::cudart_static)
    target_compile_definitions(hlnet_cudnn_baseline INTERFACE HLNET_CUDNN)
  else()
    message(STATUS "hlnet: no cuDNN column in the pipelines benches: cudnn.h, libcudnn or the CUDA toolkit not "
                   "found (set HLNET_CUDNN_INCLUDE_DIR and HLNET_CUDNN_LIBRARY, or CUDAToolkit_ROOT)")
  endif()
endif()

function(hlnet_add_spec spec)
  get_filename_component(spec "${spec}" ABSOLUTE)
  get_filename_component(name "${spec}" NAME_WE)
  set(out ${CMAKE_BINARY_DIR}/${name})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${spec} ${hlnet_specc_sources})

  execute_process(COMMAND ${HLNET_SPECC} emit ${spec} --out ${out} --ranks ${HLNET_RANKS} --layout ${HLNET_LAYOUT}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE specc_out ERROR_VARIABLE specc_err)
  if(NOT rc EQUAL 0)
    string(STRIP "${specc_err}" specc_err)
    message(FATAL_ERROR "${specc_err}")
  endif()

  set(HLNET_CURRENT_PIPELINES "")
  set(HLNET_PIPELINE_SCHEDULES ${HLNET_BUILT_SCHEDULES})  # read by hlnet_pipeline()
  include(${out}/pipelines.cmake)

  add_library(${name}_graph STATIC ${out}/${name}_graph.cpp)
  target_include_directories(${name}_graph PUBLIC ${CMAKE_SOURCE_DIR}/runtime)
  # hlnet_runtime: the views (tensor_view.cpp) the step code makes; listed here so
  # that it follows NAME_graph on the static link line.
  target_link_libraries(${name}_graph PUBLIC ${HLNET_CURRENT_PIPELINES} hlnet_halide_runtime hlnet_runtime)
  # The step code holds one table of pipelines per variant built (HLNET_SCHEDULE_LI2018, ...).
  foreach(schedule IN LISTS HLNET_BUILT_SCHEDULES)
    string(TOUPPER "${schedule}" upper)
    target_compile_definitions(${name}_graph PRIVATE HLNET_SCHEDULE_${upper})
  endforeach()

  add_executable(${name}_train ${CMAKE_SOURCE_DIR}/runtime/train_main.cpp)
  target_link_libraries(${name}_train PRIVATE hlnet_runtime ${name}_graph)
  set_target_properties(${name}_train PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${out})

  string(TOUPPER "${HLNET_TARGET}" target_upper)
  if(EXISTS ${CMAKE_SOURCE_DIR}/runtime/bench_main.cpp)
    add_executable(${name}_bench ${CMAKE_SOURCE_DIR}/runtime/bench_main.cpp)
    hlnet_add_fma_peak(${name}_bench)
    target_link_libraries(${name}_bench PRIVATE hlnet_runtime ${name}_graph Threads::Threads)
    target_compile_definitions(${name}_bench PRIVATE HLNET_TARGET_${target_upper})
    set_target_properties(${name}_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${out})
  endif()

  # Every pipeline in every schedule variant, checked and timed (bench/pipelines_bench.cpp).
  add_executable(${name}_pipelines_bench ${CMAKE_SOURCE_DIR}/bench/pipelines_bench.cpp
                 ${CMAKE_SOURCE_DIR}/bench/bench_report.cpp)
  hlnet_add_fma_peak(${name}_pipelines_bench)
  target_link_libraries(${name}_pipelines_bench PRIVATE hlnet_runtime ${name}_graph nlohmann_json::nlohmann_json)
  target_compile_definitions(${name}_pipelines_bench PRIVATE HLNET_TARGET_${target_upper})
  set_target_properties(${name}_pipelines_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${out})
  if(TARGET hlnet_cudnn_baseline)
    target_link_libraries(${name}_pipelines_bench PRIVATE hlnet_cudnn_baseline)
  endif()
endfunction()
