# The C references of the loss, the sampling and the k-means (pixcon_reference.h) as the static library
# <target>, on top of the CPU library <ops target> of cmake/PixconCpuOps.cmake (included first):
# test oracles, built only by the test builds and linked into no product library.
#   pixcon_add_reference(<target> <pixcon source root> <ops target>)

function(pixcon_add_reference target root ops)
  add_library(${target} STATIC ${root}/tests/c/reference/reference.c
    ${root}/tests/c/reference/sample_reference.c ${root}/tests/c/reference/kmeans_reference.c)
  # k-means: the contract's operations exactly, no fused multiply-add unless written
  set_source_files_properties(${root}/tests/c/reference/kmeans_reference.c PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
  target_include_directories(${target} PUBLIC ${root}/tests/c/reference PRIVATE ${root}/ops)
  target_compile_options(${target} PRIVATE ${PIXCON_OPS_FLAGS})
  target_link_libraries(${target} PUBLIC ${ops} m)
endfunction()
