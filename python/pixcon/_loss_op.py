"""The loss op's one Python wrapper: ``torch.ops.pixcon.contrastive_loss`` called by argument name,
its fake kernel and its autograd, all derived from the schemas the shim registers
(``shim/loss_op.h``), so that adding an argument to the op changes no code here.

The shim checks the op's arguments; ``call`` raises a bad one as the ValueError or TypeError it
stands for (``_library.call_op``).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import torch
from torch import Tensor

from . import _library

_FORWARD = torch.ops.pixcon.contrastive_loss.default
_BACKWARD = torch.ops.pixcon.contrastive_loss_backward.default
# pixcon_dtype codes of ops/include/pixcon/pixcon.h
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_CODE_DTYPES = {code: dtype for dtype, code in _DTYPE_CODES.items()}


def _names(op: torch._ops.OpOverload) -> tuple[str, ...]:
    return tuple(argument.name for argument in op._schema.arguments)


def _bind(op: torch._ops.OpOverload, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The op's arguments by name (defaults filled in)."""
    bound = {argument.name: argument.default_value for argument in op._schema.arguments
             if argument.has_default_value()}
    bound.update(zip(_names(op), args))
    bound.update(kwargs)
    return bound


def call(**arguments: Any) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, valid, stats) of the forward op, given its arguments by name."""
    return _library.call_op(_FORWARD, **arguments)


@functools.cache
def _output_spec(dtype: torch.dtype) -> tuple[torch.dtype, int]:
    """(accumulation dtype, statistics per row) of the forward op for embeddings of ``dtype``, as
    the C API states them."""
    lib = _library.cpu_library()
    lib.pixcon_loss_accumulation_dtype.restype = ctypes.c_int
    code = _DTYPE_CODES.get(dtype, _DTYPE_CODES[torch.float32])
    return _CODE_DTYPES[lib.pixcon_loss_accumulation_dtype(code)], lib.pixcon_loss_num_stats()


def _check_devices(op: str, arguments: dict[str, Any]) -> None:
    device = arguments["embeddings"].device
    for name, value in arguments.items():
        if isinstance(value, Tensor) and value.device != device:
            raise ValueError(f"{op}: {name} is on {value.device} but embeddings is on {device}; "
                             "every tensor argument must be on the same device")


@torch.library.register_fake("pixcon::contrastive_loss")
def _forward_fake(*args: Any, **kwargs: Any) -> tuple[Tensor, Tensor, Tensor]:
    arguments = _bind(_FORWARD, args, kwargs)
    _check_devices("pixcon.contrastive_loss", arguments)
    embeddings = arguments["embeddings"]
    torch._check(embeddings.dim() == 2, lambda: "pixcon.contrastive_loss: embeddings must be 2-D [N, D]")
    n = embeddings.shape[0]
    accumulation, num_stats = _output_spec(embeddings.dtype)
    return (embeddings.new_empty((n,), dtype=accumulation), embeddings.new_empty((n,), dtype=torch.bool),
            embeddings.new_empty((n, num_stats), dtype=accumulation))


@torch.library.register_fake("pixcon::contrastive_loss_backward")
def _backward_fake(*args: Any, **kwargs: Any) -> Tensor:
    arguments = _bind(_BACKWARD, args, kwargs)
    _check_devices("pixcon.contrastive_loss_backward", arguments)
    return arguments["embeddings"].new_empty(arguments["embeddings"].shape)


def _setup_context(ctx, inputs: tuple, output: tuple) -> None:
    _, valid, stats = output
    names = _names(_FORWARD)
    tensors = [i for i, value in enumerate(inputs) if isinstance(value, Tensor) or value is None]
    ctx.save_for_backward(*(inputs[i] for i in tensors), stats)
    ctx.tensor_names = [names[i] for i in tensors]
    ctx.others = {names[i]: value for i, value in enumerate(inputs) if i not in tensors}
    ctx.num_inputs = len(inputs)
    ctx.mark_non_differentiable(valid, stats)


def _backward(ctx, grad_loss: Tensor, _grad_valid: Tensor, _grad_stats: Tensor) -> tuple:
    *saved, stats = ctx.saved_tensors
    grad = None
    if ctx.needs_input_grad[0]:
        arguments = dict(zip(ctx.tensor_names, saved), **ctx.others, grad_loss=grad_loss, stats=stats)
        grad = _BACKWARD(**{name: arguments[name] for name in _names(_BACKWARD)})
    return (grad,) + (None,) * (ctx.num_inputs - 1)


torch.library.register_autograd("pixcon::contrastive_loss", _backward, setup_context=_setup_context)


def _double_backward(ctx, grad_output: Tensor) -> None:
    raise RuntimeError("pixcon.contrastive_loss: double backward (the gradient of the gradient) is not supported")


torch.library.register_autograd("pixcon::contrastive_loss_backward", _double_backward,
                                setup_context=lambda ctx, inputs, output: None)
