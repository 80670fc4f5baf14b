# The CPU kernels of ops/ as the static library `pixcon_ops` (target name given by the caller):
# contrastive_tier.c compiled once per (instruction-set tier, accumulation type), kmeans_tier.c and
# peak_tier.c once per tier, the widest tier chosen at run time. Shared by the top-level build and tests/emulation.
#   pixcon_add_cpu_ops(<target> <pixcon source root>)

find_package(OpenMP REQUIRED COMPONENTS C)

set(PIXCON_OPS_FLAGS -O3 -ffp-contract=fast -fno-math-errno -Wall -Wextra -Wno-unused-function)

function(pixcon_add_cpu_ops target root)
  # the C unit tests' sanitizers (PIXCON_SANITIZE) instrument the kernels too, not only the tests
  set(flags ${PIXCON_OPS_FLAGS})
  if(PIXCON_SANITIZE)
    list(APPEND flags -fsanitize=${PIXCON_SANITIZE} -fno-omit-frame-pointer)
  endif()
  set(x86 OFF)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    set(x86 ON)
  endif()
  set(tiers "scalar 16")
  if(x86)
    list(APPEND tiers "avx2 32 -mavx2 -mfma" "avx512 64 -mavx512f -mavx2 -mfma")
  endif()
  set(objects)
  foreach(tier IN LISTS tiers)
    separate_arguments(tier)
    list(POP_FRONT tier name vector_bytes)
    foreach(real f32 f64)
      set(object ${target}_tier_${name}_${real})
      add_library(${object} OBJECT ${root}/ops/cpu/contrastive_tier.c)
      target_include_directories(${object} PRIVATE ${root}/ops/include ${root}/ops/cpu)
      set(is_double 0)
      if(real STREQUAL "f64")
        set(is_double 1)
      endif()
      target_compile_definitions(${object} PRIVATE PIXCON_FN_SUFFIX=${name}_${real}
        PIXCON_VECTOR_BYTES=${vector_bytes} REAL_IS_DOUBLE=${is_double}
        $<$<BOOL:${x86}>:PIXCON_HAVE_X86_TIERS>)
      target_compile_options(${object} PRIVATE ${flags} ${tier})
      target_link_libraries(${object} PRIVATE OpenMP::OpenMP_C)
      list(APPEND objects $<TARGET_OBJECTS:${object}>)
    endforeach()
  endforeach()
  # once per tier: the k-means kernels (fused multiply-adds only where written, so every tier
  # gives the same bits) and the multiply-add peak
  foreach(tier IN LISTS tiers)
    separate_arguments(tier)
    list(POP_FRONT tier name vector_bytes)
    set(object ${target}_kmeans_${name})
    add_library(${object} OBJECT ${root}/ops/cpu/kmeans_tier.c ${root}/ops/cpu/peak_tier.c)
    target_include_directories(${object} PRIVATE ${root}/ops/include ${root}/ops/cpu)
    target_compile_definitions(${object} PRIVATE PIXCON_FN_SUFFIX=${name} PIXCON_VECTOR_BYTES=${vector_bytes}
      $<$<BOOL:${x86}>:PIXCON_HAVE_X86_TIERS>)
    target_compile_options(${object} PRIVATE ${flags} ${tier})
    target_link_libraries(${object} PRIVATE OpenMP::OpenMP_C)
    list(APPEND objects $<TARGET_OBJECTS:${object}>)
  endforeach()
  set_source_files_properties(${root}/ops/cpu/kmeans.c ${root}/ops/cpu/kmeans_tier.c PROPERTIES
    COMPILE_OPTIONS -ffp-contract=off)
  # ops/common: the checks, messages and sampling rules the CUDA library shares
  add_library(${target} STATIC
    ${root}/ops/cpu/dispatch.c ${root}/ops/cpu/layout.c ${root}/ops/cpu/relabel.c
    ${root}/ops/cpu/sample.c ${root}/ops/cpu/kmeans.c ${root}/ops/common/message.c
    ${root}/ops/common/params.c ${root}/ops/common/kmeans_params.c
    ${root}/ops/common/sample_rules.c ${objects})
  target_include_directories(${target} PUBLIC ${root}/ops/include PRIVATE ${root}/ops/cpu)
  target_compile_options(${target} PRIVATE ${flags})
  target_compile_definitions(${target} PRIVATE $<$<BOOL:${x86}>:PIXCON_HAVE_X86_TIERS>)
  target_link_libraries(${target} PUBLIC OpenMP::OpenMP_C m)
endfunction()
