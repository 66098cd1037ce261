# Prefill kernels of issue 8 (label "gpu"), included from tests/gpu/CMakeLists.txt:
#   test_gemm_mma    the matrix-core GEMMs (kernels/gpu/gemm_mma.cu: native
#                    blocks, and fp16 weights) against a CPU reference, every
#                    weight type, every tile
#   test_flash_attn  the prefill flash attention (kernels/gpu/flash_attn.cu)
#                    against a CPU reference, fused KV store included
#   test_gpu_prefill the backend's prefill paths (v1, mma, dqmma, cublas) end to end
#                    against the CPU backend, their kernels, the selector
#   gemv-bench       (CUDA only, not a test) GB/s of the decode GEMV v3
#                    launch-shape variants on the 7B shapes (issue 7)
#   attn-bench       (CUDA only, not a test) GB/s of the decode attention
#                    variants at a long context, 7B shape (issue 7)
#   chain-bench      (CUDA only, not a test) what the ~226 stage boundaries
#                    of a 7B decode step cost on the weight bytes alone:
#                    PDL launches in a graph against one persistent kernel
#                    with grid barriers, against the read-only floor (issue 7)
#   libgreta-kernel-trace.so (CUDA only, a developer tool) every kernel's
#                    start and end through CUPTI, graph replays included;
#                    checked by tests/gpu/test-kernel-trace.sh (run-gpu-tests.sh)
#   gemm-bench       (CUDA only, not a test) TFLOP/s of the 7B prefill shapes
#                    against cuBLAS fp16 on the dequantized weights (cuBLAS
#                    is also the optional prefill path: kernels/gpu/gemm_blas.cu)
if(NOT GRETA_GPU STREQUAL "none")
  greta_add_test(test_gemm_mma LABEL gpu SOURCES test_gemm_mma.c LIBS greta_kernels_gpu greta_kernels_cpu)
  greta_add_test(test_flash_attn LABEL gpu SOURCES test_flash_attn.c LIBS greta_kernels_gpu)
  greta_add_test(test_gpu_prefill LABEL gpu SOURCES test_gpu_prefill.c
    LIBS greta_engine greta_kernels_gpu greta_kernels_cpu PkgConfig::GPU_TEST_CJSON)
endif()
if(GRETA_GPU STREQUAL "cuda")
  add_executable(gemm-bench ${CMAKE_SOURCE_DIR}/tests/perf/gemm-bench.cu)
  # the project's C flags are not for nvcc (the sanitizer link flags stay:
  # the static libraries it links are sanitized in that build)
  set_target_properties(gemm-bench PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON COMPILE_OPTIONS "")
  target_compile_options(gemm-bench PRIVATE -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter
    $<$<BOOL:${GRETA_WERROR}>:-Werror=all-warnings>)
  target_link_libraries(gemm-bench PRIVATE greta_kernels_gpu CUDA::cublas)
  # gemv-bench (not a test): GB/s of the decode GEMV v3 launch shapes (issue 7)
  add_executable(gemv-bench ${CMAKE_SOURCE_DIR}/tests/perf/gemv-bench.cu)
  set_target_properties(gemv-bench PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON COMPILE_OPTIONS "")
  target_compile_options(gemv-bench PRIVATE -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter
    $<$<BOOL:${GRETA_WERROR}>:-Werror=all-warnings>)
  target_include_directories(gemv-bench PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(gemv-bench PRIVATE greta_kernels_gpu) # greta_gpu_quantize_a16
  # attn-bench (not a test): GB/s of the decode attention shapes (issue 7)
  add_executable(attn-bench ${CMAKE_SOURCE_DIR}/tests/perf/attn-bench.cu)
  set_target_properties(attn-bench PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON COMPILE_OPTIONS "")
  target_compile_options(attn-bench PRIVATE -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter
    $<$<BOOL:${GRETA_WERROR}>:-Werror=all-warnings>)
  target_include_directories(attn-bench PRIVATE ${CMAKE_SOURCE_DIR})
  # chain-bench (not a test): stage boundaries of a decode step, launched or persistent (issue 7)
  add_executable(chain-bench ${CMAKE_SOURCE_DIR}/tests/perf/chain-bench.cu)
  set_target_properties(chain-bench PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON COMPILE_OPTIONS "")
  target_compile_options(chain-bench PRIVATE -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter
    $<$<BOOL:${GRETA_WERROR}>:-Werror=all-warnings>)
  target_include_directories(chain-bench PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(chain-bench PRIVATE greta_kernels_gpu) # greta_gpu_set_pdl for gpu_launch_pdl
  # libgreta-kernel-trace.so (a developer tool): a CUPTI injection library
  # that times every kernel of a run, graph replays included (issue 7);
  # tests/gpu/test-kernel-trace.sh checks it on the GPU machine
  if(TARGET CUDA::cupti)
    add_library(greta-kernel-trace SHARED ${CMAKE_SOURCE_DIR}/tests/perf/kernel-trace.c)
    target_link_libraries(greta-kernel-trace PRIVATE CUDA::cupti)
    set_target_properties(greta-kernel-trace PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
  endif()
endif()
