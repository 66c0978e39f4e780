"""onnxruntime sessions configured for a small shared box.

Two settings matter more than the model on a 2-core NVR (see
PERFORMANCE-NOTES): idle onnxruntime threads busy-wait by default and steal
the cores that decode video, so spinning is off unless asked for; and the
thread count is explicit so several sessions do not oversubscribe the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field

Provider = Literal["cpu", "cuda", "tensorrt"]

_PROVIDER_NAMES: dict[Provider, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


class RuntimeSettings(BaseModel):
    """How ONNX models are run; part of the validated configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intra_op_threads: int = Field(default=2, ge=1, le=64)
    providers: tuple[Provider, ...] = Field(
        default=("cpu",),
        min_length=1,
        description="in order of preference; CPU is always appended as the fallback",
    )
    allow_spinning: bool = Field(
        default=False, description="busy-wait idle threads (only worth it on a dedicated core)"
    )


def available_providers(settings: RuntimeSettings) -> list[str]:
    """The configured providers this onnxruntime build really has, CPU last.

    Asking onnxruntime for a provider it lacks only logs a warning, which would
    hide a misconfigured Jetson running on its CPU; we drop unavailable ones
    explicitly so the engine can report what it actually runs on.
    """
    present = set(ort.get_available_providers())
    chosen = [_PROVIDER_NAMES[p] for p in settings.providers if _PROVIDER_NAMES[p] in present]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def load_model_bytes(path: Path, *, free_input_size: bool = False) -> bytes:
    """The model serialised without initializers listed as graph inputs.

    Some exporters (SFace among them) list every weight as a graph input, which
    stops onnxruntime from constant-folding them: removing them from
    `graph.input` gives the same outputs 18-26% faster; PRelu is rewritten
    (`_prelu_as_relu`). The file on disk is not changed, so its SHA-256 stays
    the pinned one.
    """
    model = onnx.load(str(path))
    if free_input_size:
        _free_spatial_dims(model)
    _prelu_as_relu(model)
    weights = {init.name for init in model.graph.initializer}
    graph_inputs = list(model.graph.input)
    if any(i.name in weights for i in graph_inputs):
        kept = [i for i in graph_inputs if i.name not in weights]
        del model.graph.input[:]
        model.graph.input.extend(kept)
    return bytes(model.SerializeToString())


def _prelu_as_relu(model: onnx.ModelProto) -> None:
    """Rewrite each PRelu with a constant slope as Relu(x) + slope * Min(x, 0).

    onnxruntime's CPU PRelu broadcasts its per-channel slope on a slow generic
    path: in SFace the 27 PRelu nodes took 18.9 ms of a 35 ms embedding on one
    core, more than all its convolutions (onnxruntime's profiler; issue 16).
    The same arithmetic as Relu, Min, Mul and Add runs on vectorised kernels:
    the embedding takes 23 ms and its output is bit-identical
    (`tests/models/test_runtime.py`). The recognizers of both packs (SFace,
    w600k_mbf) are PRelu networks; the detectors have none.
    """
    constants = {init.name for init in model.graph.initializer}
    if not any(n.op_type == "PRelu" and n.input[1] in constants for n in model.graph.node):
        return
    zero = "mamoru_prelu_zero"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((), np.float32), zero))
    nodes: list[onnx.NodeProto] = []
    for k, node in enumerate(model.graph.node):
        if node.op_type != "PRelu" or node.input[1] not in constants:
            nodes.append(node)
            continue
        x, slope = node.input
        pos, neg, scaled = (f"mamoru_prelu{k}_{part}" for part in ("pos", "neg", "scaled"))
        nodes += [onnx.helper.make_node("Relu", [x], [pos]),
                  onnx.helper.make_node("Min", [x, zero], [neg]),
                  onnx.helper.make_node("Mul", [neg, slope], [scaled]),
                  onnx.helper.make_node("Add", [pos, scaled], [node.output[0]], name=node.name)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _free_spatial_dims(model: onnx.ModelProto) -> None:
    """Let a detector exported at a fixed input size run at another one.

    YuNet's file pins its input to 1x3x640x640, but its graph is fully
    convolutional (its reshapes use -1), so a 16:9 frame can be detected at
    640x384 instead of being letterboxed into 640x640 (about half the cost,
    issue 16). Height and width become free, and the pinned output shapes,
    which would then be wrong, are dropped.
    """
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) == 4:
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")


def create_session(path: Path, settings: RuntimeSettings, *,
                   free_input_size: bool = False) -> ort.InferenceSession:
    """An inference session for a verified model file."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not settings.allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(
        load_model_bytes(path, free_input_size=free_input_size), sess_options=options,
        providers=available_providers(settings),
    )
