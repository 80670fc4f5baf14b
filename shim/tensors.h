// Small tensor helpers of the shim: dtype names for messages, allocation, device checks.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/csrc/stable/tensor.h>

namespace pixcon_shim {

using torch::stable::Tensor;

// "float32", "int64", ... for messages.
const char* dtype_name(torch::headeronly::ScalarType t);

bool is_integer(torch::headeronly::ScalarType t);

// An uninitialised tensor on the device of `like`.
Tensor empty_on(const Tensor& like, std::vector<int64_t> sizes, torch::headeronly::ScalarType dtype);

// A ValueError naming `name` unless `t` is on the device of `reference` (named `reference_name`).
void check_same_device(const char* op, const char* name, const Tensor& t,
                       const char* reference_name, const Tensor& reference);

// `t` as a contiguous int64 tensor; a TypeError naming `name` when it is not an integer tensor.
Tensor as_int64(const char* op, const char* name, const Tensor& t);

}  // namespace pixcon_shim
