#include "tensors.h"

#include <string>

#include <torch/csrc/stable/ops.h>

#include "errors.h"

namespace pixcon_shim {

using torch::headeronly::ScalarType;

namespace {

std::string device_name(const Tensor& t) {
  if (t.is_cpu()) return "cpu";
  if (t.is_cuda()) return "cuda:" + std::to_string(t.get_device_index());
  return "a non-CPU, non-CUDA device";
}

}  // namespace

const char* dtype_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return "float32";
    case ScalarType::Double: return "float64";
    case ScalarType::Half: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
    case ScalarType::Bool: return "bool";
    case ScalarType::Byte: return "uint8";
    case ScalarType::Char: return "int8";
    case ScalarType::Short: return "int16";
    case ScalarType::Int: return "int32";
    case ScalarType::Long: return "int64";
    default: return "an unsupported dtype";
  }
}

bool is_integer(ScalarType t) {
  return t == ScalarType::Byte || t == ScalarType::Char || t == ScalarType::Short ||
         t == ScalarType::Int || t == ScalarType::Long;
}

Tensor empty_on(const Tensor& like, std::vector<int64_t> sizes, ScalarType dtype) {
  return torch::stable::empty(sizes, dtype, std::nullopt, like.device());
}

void check_same_device(const char* op, const char* name, const Tensor& t,
                       const char* reference_name, const Tensor& reference) {
  const bool same = t.is_cpu() == reference.is_cpu() && t.is_cuda() == reference.is_cuda() &&
                    (!t.is_cuda() || t.get_device_index() == reference.get_device_index());
  require(same, ErrorKind::Value, op, ": ", name, " is on ", device_name(t), " but ",
          reference_name, " is on ", device_name(reference),
          "; every tensor argument must be on the same device");
}

Tensor as_int64(const char* op, const char* name, const Tensor& t) {
  require(is_integer(t.scalar_type()), ErrorKind::Type, op, ": ", name,
          " must be an integer tensor, got ", dtype_name(t.scalar_type()));
  return torch::stable::contiguous(torch::stable::to(t, ScalarType::Long));
}

}  // namespace pixcon_shim
