"""Build tiny, valid, real safetensors checkpoints, then break exactly one thing.

    ckpt = qwen3_5_moe("ct-fp8").drop("layers.0.mlp.experts.0.up_proj.input_scale").write(tmp_path)

Tensors are written with safetensors' own torch writer; scales get real, distinct values so
value-reading rules see realistic data. Dimensions are multiples of 128 where a scheme needs
it (group 128, block 128), like the real-tool fixtures.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import save_file

Tensors = dict[str, torch.Tensor]
SchemeFn = Callable[[str, int, int, torch.Generator], Tensors]

H = 128  # hidden size
E = 2  # routed experts
I_MOE = 128  # moe_intermediate_size
NK, NV, HK, HV = 2, 4, 64, 64  # GDN heads and head dims -> key_dim 128, value_dim 256


def _w(out: int, inp: int, g: torch.Generator) -> torch.Tensor:
    return (torch.randn(out, inp, generator=g) * 0.02).to(torch.bfloat16)


def _scale(g: torch.Generator, shape: tuple[int, ...] = (1,)) -> torch.Tensor:
    return (torch.rand(shape, generator=g) * 1e-3 + 1e-4).to(torch.bfloat16)


def _fp4_block_scale(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """E4M3 block scales of NVFP4, in the range quantizers write (never 0: a BF16 scale of
    1e-4 would round to 0 in E4M3, which the deep scan rightly refuses)."""
    return (torch.rand(shape, generator=g) * 400 + 1).to(torch.float8_e4m3fn)


# --------------------------------------------------------------------------- schemes


def bf16(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {f"{name}.weight": _w(out, inp, g)}


def ct_fp8(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight": _w(out, inp, g).to(torch.float8_e4m3fn),
        f"{name}.weight_scale": _scale(g),
        f"{name}.input_scale": _scale(g),
    }


def ct_fp8_dynamic(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight": _w(out, inp, g).to(torch.float8_e4m3fn),
        f"{name}.weight_scale": _scale(g, (out, 1)),
    }


def ct_fp8_block(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight": _w(out, inp, g).to(torch.float8_e4m3fn),
        f"{name}.weight_scale": _scale(g, (-(-out // 128), -(-inp // 128))),
    }


def ct_w4a16(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight_packed": torch.randint(-(2**31), 2**31 - 1, (out, inp // 8),
                                               generator=g, dtype=torch.int32),
        f"{name}.weight_scale": _scale(g, (out, inp // 128)),
        f"{name}.weight_shape": torch.tensor([out, inp], dtype=torch.int64),
    }


def ct_nvfp4(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight_packed": torch.randint(0, 255, (out, inp // 2), generator=g,
                                               dtype=torch.uint8),
        f"{name}.weight_scale": _fp4_block_scale(g, (out, inp // 16)),
        f"{name}.weight_global_scale": torch.tensor([30208.0]),
        f"{name}.input_global_scale": torch.tensor([652.0]),
    }


def ct_mxfp4(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight_packed": torch.randint(0, 255, (out, inp // 2), generator=g,
                                               dtype=torch.uint8),
        f"{name}.weight_scale": torch.randint(115, 125, (out, inp // 32), generator=g,
                                              dtype=torch.uint8),
    }


def modelopt_fp8(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight": _w(out, inp, g).to(torch.float8_e4m3fn),
        f"{name}.weight_scale": _scale(g, ()).float(),
        f"{name}.input_scale": _scale(g, ()).float(),
    }


def modelopt_nvfp4(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight": torch.randint(0, 255, (out, inp // 2), generator=g, dtype=torch.uint8),
        f"{name}.weight_scale": _fp4_block_scale(g, (out, inp // 16)),
        f"{name}.weight_scale_2": torch.tensor(3.5e-5),
        f"{name}.input_scale": torch.tensor(1.6e-3),
    }


def quark_mxfp4(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    t = ct_mxfp4(name, out, inp, g)
    return {f"{name}.weight": t[f"{name}.weight_packed"], f"{name}.weight_scale":
            t[f"{name}.weight_scale"]}


def quark_int8(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    """AMD Quark W8A8 INT8 export: per-channel symmetric int8 weights with their 1-D scale and
    zero point, static per-tensor int8 activations with scale and zero point."""
    return {
        f"{name}.weight": torch.randint(-127, 128, (out, inp), generator=g, dtype=torch.int8),
        f"{name}.weight_scale": _scale(g, (out,)).float(),
        f"{name}.weight_zero_point": torch.zeros(out, dtype=torch.int8),
        f"{name}.input_scale": _scale(g, ()).float(),
        f"{name}.input_zero_point": torch.zeros((), dtype=torch.int8),
    }


def quark_nvfp4(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    """AMD Quark NVFP4 export: packed FP4 weight, E4M3 scales per 16 inputs, and the two
    per-tensor FP8-level scales vLLM's QuarkNVFP4 registers."""
    t = modelopt_nvfp4(name, out, inp, g)
    return {
        f"{name}.weight": t[f"{name}.weight"],
        f"{name}.weight_scale": t[f"{name}.weight_scale"],
        f"{name}.weight_scale_2": torch.tensor(3.5e-5),
        f"{name}.input_scale_2": torch.tensor(1.6e-3),
    }


def quark_int4(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    """AMD Quark W4A16 INT4 export, group 128: int32 weight [in, out/8] (AWQ's transposed
    packing), scales [in/128, out], int32-packed zero points [in/128, out/8]."""
    groups = inp // 128
    return {
        f"{name}.weight": _int4((inp, out // 8), g),
        f"{name}.weight_scale": _scale(g, (groups, out)),
        f"{name}.weight_zero_point": torch.full((groups, out // 8), 0x88888888 - 2**32,
                                                dtype=torch.int32),
    }


def _quark_spec(dtype: str, qscheme: str, *, dynamic: bool = False) -> dict[str, Any]:
    """One Quark tensor config as Quark's exporter writes it (the fields vLLM reads)."""
    return {"dtype": dtype, "qscheme": qscheme, "is_dynamic": dynamic, "symmetric": True,
            "ch_axis": 0 if qscheme == "per_channel" else None, "group_size": None,
            "round_method": "half_even", "scale_type": "float"}


def fp8_block_inv(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    return {
        f"{name}.weight": _w(out, inp, g).to(torch.float8_e4m3fn),
        f"{name}.weight_scale_inv": _scale(g, (-(-out // 128), -(-inp // 128))).float(),
    }


def quark_fp8_block(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    """AMD Quark FP8 per-block export: E4M3 weight and one F32 multiplier per 128x128 tile,
    named ``weight_scale`` (vLLM's ``QuarkW8A8Fp8PerBlock`` registers that name)."""
    t = fp8_block_inv(name, out, inp, g)
    return {f"{name}.weight": t[f"{name}.weight"],
            f"{name}.weight_scale": t[f"{name}.weight_scale_inv"]}


def fbgemm_fp8(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    """transformers' ``FbgemmFp8Linear`` layout: F8_E4M3 weight, F32 ``[out, 1]`` row scale
    (``input_scale_ub`` is a non-persistent buffer, never saved)."""
    return {
        f"{name}.weight": _w(out, inp, g).to(torch.float8_e4m3fn),
        f"{name}.weight_scale": _scale(g, (out, 1)).float(),
    }


def _e8m0(g: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """E8M0 scales (powers of two, 2^-8 .. 2^-4), as DeepSeek-V4's release stores them."""
    exps = torch.randint(119, 124, shape, generator=g, dtype=torch.uint8)
    return exps.view(torch.float8_e8m0fnu)


def dsv4_fp8(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    """DeepSeek-V4's block-FP8 Linear: F8_E4M3 ``weight``, E8M0 ``scale`` per 128x128 block."""
    return {
        f"{name}.weight": _w(out, inp, g).to(torch.float8_e4m3fn),
        f"{name}.scale": _e8m0(g, (-(-out // 128), -(-inp // 128))),
    }


def dsv4_mxfp4(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
    """DeepSeek-V4's MXFP4 expert: two E2M1 values per I8 byte, E8M0 ``scale`` per 32 inputs."""
    return {
        f"{name}.weight": torch.randint(-128, 127, (out, inp // 2), generator=g,
                                        dtype=torch.int8),
        f"{name}.scale": _e8m0(g, (out, inp // 32)),
    }


def _int4(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.randint(-(2**31), 2**31 - 1, shape, generator=g, dtype=torch.int64).to(torch.int32)


def gptq_int4(name: str, out: int, inp: int, g: torch.Generator, group: int = 128) -> Tensors:
    """AutoGPTQ / GPTQModel layout, group 128: qweight [in/8, out], g_idx [in]."""
    groups = inp // group
    return {
        f"{name}.qweight": _int4((inp // 8, out), g),
        f"{name}.qzeros": torch.full((groups, out // 8), 0x77777777, dtype=torch.int32),
        f"{name}.scales": _scale(g, (groups, out)).to(torch.float16),
        f"{name}.g_idx": (torch.arange(inp, dtype=torch.int32) // group),
    }


def awq_int4(name: str, out: int, inp: int, g: torch.Generator, group: int = 128) -> Tensors:
    """AutoAWQ GEMM layout, group 128: qweight [in, out/8]."""
    groups = inp // group
    return {
        f"{name}.qweight": _int4((inp, out // 8), g),
        f"{name}.qzeros": _int4((groups, out // 8), g),
        f"{name}.scales": _scale(g, (groups, out)).to(torch.float16),
    }


def _ct_config(weights: dict[str, Any], inputs: dict[str, Any] | None, fmt: str,
               ignore: list[str]) -> dict[str, Any]:
    return {
        "quant_method": "compressed-tensors",
        "format": fmt,
        "quantization_status": "compressed",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                      "input_activations": inputs}},
        "ignore": ignore,
    }


_F8 = {"num_bits": 8, "type": "float", "symmetric": True}
CT_IGNORE = ["lm_head", "re:.*mlp.gate$", "re:.*shared_expert_gate$", "re:.*in_proj_a$",
             "re:.*in_proj_b$"]


def _schemes() -> dict[str, tuple[SchemeFn, Callable[[list[str]], dict[str, Any]]]]:
    return {
        "bf16": (bf16, lambda ig: {}),
        "ct-fp8": (ct_fp8, lambda ig: _ct_config(
            {**_F8, "strategy": "tensor"}, {**_F8, "strategy": "tensor", "dynamic": False},
            "float-quantized", ig)),
        "ct-fp8-dynamic": (ct_fp8_dynamic, lambda ig: _ct_config(
            {**_F8, "strategy": "channel"}, {**_F8, "strategy": "token", "dynamic": True},
            "float-quantized", ig)),
        "ct-fp8-block": (ct_fp8_block, lambda ig: _ct_config(
            {**_F8, "strategy": "block", "block_structure": [128, 128]},
            {**_F8, "strategy": "group", "group_size": 128, "dynamic": True},
            "float-quantized", ig)),
        "ct-w4a16": (ct_w4a16, lambda ig: _ct_config(
            {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
             "group_size": 128}, None, "pack-quantized", ig)),
        "ct-nvfp4": (ct_nvfp4, lambda ig: _ct_config(
            {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16},
            {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
             "dynamic": "local"}, "nvfp4-pack-quantized", ig)),
        "ct-mxfp4": (ct_mxfp4, lambda ig: _ct_config(
            {"num_bits": 4, "type": "float", "strategy": "group", "group_size": 32}, None,
            "mxfp4-pack-quantized", ig)),
        "fp8-block": (fp8_block_inv, lambda ig: {
            "quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128],
            "modules_to_not_convert": ig}),
        "dsv4-fp8": (dsv4_fp8, lambda ig: {
            "quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3",
            "scale_fmt": "ue8m0", "weight_block_size": [128, 128]}),
        "dsv4-mxfp4": (dsv4_mxfp4, lambda ig: {}),
        "fbgemm-fp8": (fbgemm_fp8, lambda ig: {
            "quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
            "modules_to_not_convert": [m for m in ig if not m.startswith("re:")]}),
        "gptq": (gptq_int4, lambda ig: {
            "quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False,
            "sym": True, "lm_head": False, "checkpoint_format": "gptq"}),
        "awq": (awq_int4, lambda ig: {
            "quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True,
            "version": "gemm", "modules_to_not_convert": None}),
        "modelopt-fp8": (modelopt_fp8, lambda ig: {}),
        "modelopt-nvfp4": (modelopt_nvfp4, lambda ig: {}),
        "quark-mxfp4": (quark_mxfp4, lambda ig: {
            "quant_method": "quark", "export": {"kv_cache_group": [], "pack_method": "reorder"},
            "global_quant_config": {"weight": {"dtype": "fp4", "qscheme": "per_group",
                                               "group_size": 32, "scale_format": "e8m0",
                                               "is_dynamic": False},
                                    "input_tensors": None},
            "layer_quant_config": {}, "exclude": ig}),
        "quark-nvfp4": (quark_nvfp4, lambda ig: {
            "quant_method": "quark", "export": {"kv_cache_group": [], "pack_method": "reorder"},
            "global_quant_config": {
                "weight": [{**_quark_spec("fp4", "per_group"), "group_size": 16},
                           _quark_spec("fp8_e4m3", "per_tensor")],
                "input_tensors": [{**_quark_spec("fp4", "per_group", dynamic=True),
                                   "group_size": 16},
                                  _quark_spec("fp8_e4m3", "per_tensor")],
                "output_tensors": None, "bias": None},
            "layer_quant_config": {}, "layer_type_quant_config": {}, "exclude": ig}),
        "quark-int4": (quark_int4, lambda ig: {
            "quant_method": "quark", "export": {"kv_cache_group": [], "pack_method": "reorder"},
            "global_quant_config": {
                "weight": {**_quark_spec("int4", "per_group"), "group_size": 128},
                "input_tensors": None, "output_tensors": None, "bias": None},
            "layer_quant_config": {}, "layer_type_quant_config": {}, "exclude": ig}),
        "quark-fp8-block": (quark_fp8_block, lambda ig: {
            "quant_method": "quark", "export": {"kv_cache_group": [], "pack_method": "reorder"},
            "global_quant_config": {
                "weight": {**_quark_spec("fp8_e4m3", "per_block"), "block_size": [128, 128]},
                "input_tensors": {**_quark_spec("fp8_e4m3", "per_group", dynamic=True),
                                  "group_size": 128},
                "output_tensors": None, "bias": None},
            "layer_quant_config": {}, "layer_type_quant_config": {}, "exclude": ig}),
        "quark-int8": (quark_int8, lambda ig: {
            "quant_method": "quark", "export": {"kv_cache_group": [], "pack_method": "reorder"},
            "global_quant_config": {"weight": _quark_spec("int8", "per_channel"),
                                    "input_tensors": _quark_spec("int8", "per_tensor"),
                                    "output_tensors": None, "bias": None},
            "layer_quant_config": {}, "layer_type_quant_config": {}, "exclude": ig}),
    }


#: ``fbgemm-fp8``, which the builders write for dense models only (its engines build MoE
#: experts unquantized), and DeepSeek-V4's own ``dsv4-*`` (:func:`deepseek_v4` only)
DENSE_ONLY_SCHEMES = ("fbgemm-fp8", "dsv4-fp8", "dsv4-mxfp4")
#: schemes qscale checks on every builder, the MoE ones included
SCHEMES = tuple(s for s in _schemes() if s not in DENSE_ONLY_SCHEMES)


# --------------------------------------------------------------------------- the builder


@dataclass
class Built:
    """A checkpoint in memory: config files and tensors, before writing."""

    config: dict[str, Any]
    tensors: Tensors
    extra_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the safetensors ``__metadata__`` of every file written; a callable gets the shard's
    #: index and tensor names (torchao keeps its tensor-subclass layout there)
    metadata: dict[str, str] | Callable[[int, list[str]], dict[str, str]] | None = None

    def copy(self) -> Built:
        """An independent copy: configs deep-copied, every tensor cloned."""
        return Built(copy.deepcopy(self.config), {n: t.clone() for n, t in self.tensors.items()},
                     copy.deepcopy(self.extra_files),
                     copy.deepcopy(self.metadata) if isinstance(self.metadata, dict)
                     else self.metadata)

    def _metadata(self, index: int, names: list[str]) -> dict[str, str] | None:
        return self.metadata(index, names) if callable(self.metadata) else self.metadata

    def _match(self, pattern: str) -> list[str]:
        found = [n for n in self.tensors if re.search(pattern, n)]
        assert found, f"no tensor matches {pattern!r}"
        return found

    def drop(self, pattern: str) -> Built:
        """Remove every tensor whose name matches the regex."""
        for n in self._match(pattern):
            del self.tensors[n]
        return self

    def retype(self, pattern: str, dtype: torch.dtype) -> Built:
        """Change the dtype of matching tensors."""
        for n in self._match(pattern):
            self.tensors[n] = self.tensors[n].float().to(dtype)
        return self

    def reshape(self, name: str, shape: tuple[int, ...]) -> Built:
        """Give one tensor another shape (values repeated or cut to fit)."""
        t = self.tensors[name].flatten()
        n = 1
        for d in shape:
            n *= d
        self.tensors[name] = t.repeat(n // max(t.numel(), 1) + 1)[:n].reshape(shape).clone()
        return self

    def set_value(self, name: str, value: float | list[float]) -> Built:
        """Overwrite one tensor's values, keeping its dtype and shape."""
        t = self.tensors[name]
        self.tensors[name] = torch.full_like(t.float(), 0).add(torch.tensor(value)).to(t.dtype)
        return self

    def add(self, name: str, tensor: torch.Tensor) -> Built:
        """Add one tensor."""
        self.tensors[name] = tensor
        return self

    def set_config(self, pointer: str, value: Any) -> Built:
        """Set a config.json value by JSON pointer, e.g. ``/quantization_config/ignore``."""
        parts = pointer.strip("/").split("/")
        node = self.config
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        return self

    def write(self, root: Path, *, shards: int = 1, name: str = "ckpt") -> Path:
        """Write config.json, the safetensors file(s) and, when sharded, the index."""
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(self.config, indent=1))
        for fname, obj in self.extra_files.items():
            (out / fname).write_text(json.dumps(obj, indent=1))
        names = sorted(self.tensors)
        if shards == 1:
            save_file({n: self.tensors[n].contiguous() for n in names},
                      str(out / "model.safetensors"), metadata=self._metadata(0, names))
            return out
        weight_map = {}
        for i in range(shards):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = names[i::shards]
            save_file({n: self.tensors[n].contiguous() for n in part}, str(out / fname),
                      metadata=self._metadata(i, part))
            weight_map.update(dict.fromkeys(part, fname))
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
        return out


def from_files(folder: Path) -> Built:
    """A one-file checkpoint read back from disk (a real tool's fixture), its
    ``__metadata__`` kept, to break like any other."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        tensors = {n: f.get_tensor(n) for n in f.keys()}  # noqa: SIM118
        metadata = dict(f.metadata() or {})
    extra = {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))
             if p.name != "config.json" and not p.name.endswith(".index.json")}
    return Built(json.loads((folder / "config.json").read_text()), tensors, extra,
                 metadata=metadata or None)


_BUILT: dict[str, Built] = {}
_F = TypeVar("_F", bound=Callable[..., Built])


def _memo(fn: _F) -> _F:
    """Build each (builder, arguments) once per process and hand out copies: the builders are
    deterministic (their own seeded generator), so a copy is the checkpoint a fresh call
    builds, tensor for tensor, and a test may change it freely (tensors are cloned, configs
    deep-copied). Drawing the random tensors took ~0.1 s a call, for hundreds of calls."""

    @functools.wraps(fn)
    def cached(*args: Any, **kwargs: Any) -> Built:
        key = json.dumps([fn.__name__, args, kwargs], sort_keys=True, default=repr)
        if key not in _BUILT:
            _BUILT[key] = fn(*args, **kwargs)
        return _BUILT[key].copy()

    return cached  # type: ignore[return-value]


def _text_config() -> dict[str, Any]:
    return {
        "model_type": "qwen3_5_moe_text", "hidden_size": H, "num_hidden_layers": 2,
        "layer_types": ["linear_attention", "full_attention"], "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 64, "linear_num_key_heads": NK,
        "linear_num_value_heads": NV, "linear_key_head_dim": HK, "linear_value_head_dim": HV,
        "linear_conv_kernel_dim": 4, "num_experts": E, "num_experts_per_tok": 1,
        "moe_intermediate_size": I_MOE, "shared_expert_intermediate_size": I_MOE,
        "vocab_size": 256, "full_attention_interval": 2,
    }


@_memo
def qwen3_5_moe(scheme: str = "ct-fp8", *, seed: int = 0, shared_expert: str | None = None,
                ignore: list[str] | None = None) -> Built:
    """A 2-layer Qwen3.5-MoE (VL class, ``model.language_model.`` prefix): layer 0 linear
    attention (split in_proj_qkv/z/b/a), layer 1 full attention; 2 experts + a shared expert.

    ``shared_expert`` overrides the shared expert's scheme (e.g. "bf16", as AMD's MXFP4
    checkpoints keep it); the config's ignore list is extended to match unless ``ignore`` is
    given explicitly.
    """
    fn, make_cfg = _schemes()[scheme]
    g = torch.Generator().manual_seed(seed)
    p = "model.language_model.layers"
    key_dim, value_dim = NK * HK, NV * HV
    linear: list[tuple[str, int, int, bool]] = [  # name, out, in, quantized?
        (f"{p}.0.linear_attn.in_proj_qkv", 2 * key_dim + value_dim, H, True),
        (f"{p}.0.linear_attn.in_proj_z", value_dim, H, True),
        (f"{p}.0.linear_attn.in_proj_b", NV, H, False),
        (f"{p}.0.linear_attn.in_proj_a", NV, H, False),
        (f"{p}.0.linear_attn.out_proj", H, value_dim, True),
        (f"{p}.1.self_attn.q_proj", 2 * 2 * 64, H, True),
        (f"{p}.1.self_attn.k_proj", 128, H, True),
        (f"{p}.1.self_attn.v_proj", 128, H, True),
        (f"{p}.1.self_attn.o_proj", H, 2 * 64, True),
    ]
    se_quant = shared_expert is None
    for layer in (0, 1):
        mlp = f"{p}.{layer}.mlp"
        for e in range(E):
            linear += [(f"{mlp}.experts.{e}.gate_proj", I_MOE, H, True),
                       (f"{mlp}.experts.{e}.up_proj", I_MOE, H, True),
                       (f"{mlp}.experts.{e}.down_proj", H, I_MOE, True)]
        linear += [(f"{mlp}.shared_expert.gate_proj", I_MOE, H, se_quant),
                   (f"{mlp}.shared_expert.up_proj", I_MOE, H, se_quant),
                   (f"{mlp}.shared_expert.down_proj", H, I_MOE, se_quant),
                   (f"{mlp}.shared_expert_gate", 1, H, False),
                   (f"{mlp}.gate", E, H, False)]
    tensors: Tensors = {}
    for name, out, inp, quantized in linear:
        tensors.update((fn if quantized else bf16)(name, out, inp, g))
    for layer in (0, 1):
        tensors[f"{p}.{layer}.input_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors[f"{p}.0.linear_attn.conv1d.weight"] = torch.randn(
        2 * key_dim + value_dim, 1, 4, generator=g).to(torch.bfloat16)
    tensors[f"{p}.0.linear_attn.A_log"] = torch.zeros(NV)
    tensors[f"{p}.0.linear_attn.dt_bias"] = torch.ones(NV, dtype=torch.bfloat16)
    tensors["model.language_model.embed_tokens.weight"] = _w(256, H, g)
    tensors["model.language_model.norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors["lm_head.weight"] = _w(256, H, g)
    ig = list(CT_IGNORE) if ignore is None else list(ignore)
    if ignore is None and scheme.startswith("fp8"):
        ig = ["lm_head"] + [n for n, *_, q in linear if not q]
    if ignore is None and not se_quant:
        ig.append("re:.*shared_expert\\..*")
    config: dict[str, Any] = {
        "architectures": ["Qwen3_5MoeForConditionalGeneration"],
        "model_type": "qwen3_5_moe",
        "text_config": _text_config(),
        "tie_word_embeddings": False,
    }
    qc = make_cfg(ig)
    extra: dict[str, dict[str, Any]] = {}
    if scheme.startswith("modelopt"):
        algo = "FP8" if scheme == "modelopt-fp8" else "NVFP4"
        excl = [n for n, *_, q in linear if not q] + ["lm_head"]
        extra["hf_quant_config.json"] = {"producer": {"name": "modelopt"}, "quantization": {
            "quant_algo": algo, "group_size": 16, "exclude_modules": excl}}
    elif qc:
        config["quantization_config"] = qc
    return Built(copy.deepcopy(config), tensors, extra)


GPT_OSS_EXPERTS, GPT_OSS_INTER, GPT_OSS_HEADS, GPT_OSS_HEAD_DIM = 2, 128, 4, 32


def _gpt_oss_layer_rest(tensors: Tensors, p: str, g: torch.Generator) -> None:
    """A gpt-oss layer's router, sinks and norms (BF16 in every published layout)."""
    tensors[f"{p}.mlp.router.weight"] = _w(GPT_OSS_EXPERTS, H, g)
    tensors[f"{p}.mlp.router.bias"] = torch.zeros(GPT_OSS_EXPERTS, dtype=torch.bfloat16)
    tensors[f"{p}.self_attn.sinks"] = torch.zeros(GPT_OSS_HEADS, dtype=torch.bfloat16)
    for norm in ("input_layernorm", "post_attention_layernorm"):
        tensors[f"{p}.{norm}.weight"] = torch.ones(H, dtype=torch.bfloat16)


def _gpt_oss_rest(tensors: Tensors, g: torch.Generator) -> dict[str, Any]:
    """Embeddings, final norm and head; the config of the 2-layer gpt-oss builders."""
    tensors["model.embed_tokens.weight"] = _w(256, H, g)
    tensors["model.norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors["lm_head.weight"] = _w(256, H, g)
    heads = GPT_OSS_HEADS
    return {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": H,
        "intermediate_size": GPT_OSS_INTER, "num_hidden_layers": 2, "num_attention_heads": heads,
        "num_key_value_heads": heads, "head_dim": GPT_OSS_HEAD_DIM,
        "num_local_experts": GPT_OSS_EXPERTS, "num_experts_per_tok": 2, "attention_bias": True,
        "vocab_size": 256, "layer_types": ["sliding_attention", "full_attention"],
        "sliding_window": 64, "tie_word_embeddings": False,
    }


@_memo
def gpt_oss(scheme: str = "ct-fp8", *, seed: int = 0) -> Built:
    """A 2-layer gpt-oss (``GptOssForCausalLM``) in llm-compressor's per-expert layout: every
    Linear, routed experts included (``mlp.experts.<i>.{gate,up,down}_proj``), quantized with
    ``scheme`` and carrying its bias; the router, sinks, norms, embeddings and head stay BF16.
    2 experts, hidden and intermediate size 128, 4 heads of 32 (as the real-tool fixtures,
    which have 4 experts)."""
    if scheme.startswith(("modelopt", "quark")):
        raise ValueError(f"gpt_oss() builds compressed-tensors, fp8 or bf16 schemes, not {scheme}")
    fn, make_cfg = _schemes()[scheme]
    g = torch.Generator().manual_seed(seed)
    n_exp, inter, heads, head_dim = GPT_OSS_EXPERTS, GPT_OSS_INTER, GPT_OSS_HEADS, GPT_OSS_HEAD_DIM
    tensors: Tensors = {}
    for layer in (0, 1):
        p = f"model.layers.{layer}"
        linear = [(f"{p}.self_attn.{x}_proj", heads * head_dim, H) for x in "qkv"]
        linear.append((f"{p}.self_attn.o_proj", H, heads * head_dim))
        for e in range(n_exp):
            linear += [(f"{p}.mlp.experts.{e}.gate_proj", inter, H),
                       (f"{p}.mlp.experts.{e}.up_proj", inter, H),
                       (f"{p}.mlp.experts.{e}.down_proj", H, inter)]
        for name, out, inp in linear:
            tensors.update(fn(name, out, inp, g))
            tensors[f"{name}.bias"] = torch.zeros(out, dtype=torch.bfloat16)
        _gpt_oss_layer_rest(tensors, p, g)
    config = _gpt_oss_rest(tensors, g)
    qc = make_cfg(["re:.*mlp.router$", "lm_head"])
    if qc:
        config["quantization_config"] = qc
    return Built(config, tensors)


@_memo
def gpt_oss_mxfp4(*, seed: int = 0) -> Built:
    """A 2-layer gpt-oss as OpenAI publishes it (``quant_method: mxfp4``): each layer's
    experts fused in one module, ``{gate_up,down}_proj_blocks`` (U8, ``[E, out, in/32, 16]``)
    with ``*_scales`` (U8 E8M0, ``[E, out, in/32]``) and BF16 ``*_bias``; attention, router,
    sinks, norms, embeddings and head BF16. 2 experts, hidden and intermediate size 128."""
    g = torch.Generator().manual_seed(seed)
    n_exp, inter, heads, head_dim = GPT_OSS_EXPERTS, GPT_OSS_INTER, GPT_OSS_HEADS, GPT_OSS_HEAD_DIM
    tensors: Tensors = {}
    for layer in (0, 1):
        p = f"model.layers.{layer}"
        for x in "qkvo":
            out, inp = (H, heads * head_dim) if x == "o" else (heads * head_dim, H)
            tensors[f"{p}.self_attn.{x}_proj.weight"] = _w(out, inp, g)
            tensors[f"{p}.self_attn.{x}_proj.bias"] = torch.zeros(out, dtype=torch.bfloat16)
        for proj, out, inp in (("gate_up_proj", 2 * inter, H), ("down_proj", H, inter)):
            ex = f"{p}.mlp.experts.{proj}"
            tensors[f"{ex}_blocks"] = torch.randint(
                0, 256, (n_exp, out, inp // 32, 16), generator=g, dtype=torch.uint8)
            tensors[f"{ex}_scales"] = torch.randint(
                120, 130, (n_exp, out, inp // 32), generator=g, dtype=torch.uint8)
            tensors[f"{ex}_bias"] = torch.zeros(n_exp, out, dtype=torch.bfloat16)
        _gpt_oss_layer_rest(tensors, p, g)
    config = _gpt_oss_rest(tensors, g)
    config["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"],
    }
    return Built(config, tensors)


@_memo
def dense(arch: str, scheme: str = "ct-fp8", *, prefix: str = "model.", layers: int = 2,  # noqa: PLR0913
          seed: int = 0, config: dict[str, Any] | None = None, lm_head: str = "lm_head"
          ) -> Built:
    """A Llama-shaped dense decoder (q/k/v/o, gate/up/down per layer, BF16 embeddings and
    ``lm_head``) under any architecture name, for architectures the engine catalogue plans
    from generated data. ``prefix`` is where the layers live (``model.language_model.`` for
    multimodal wrappers); ``config`` is merged into config.json."""
    fn, make_cfg = _schemes()[scheme]
    g = torch.Generator().manual_seed(seed)
    tensors: Tensors = {}
    for i in range(layers):
        p = f"{prefix}layers.{i}"
        for name, out, inp in (
            ("self_attn.q_proj", 128, H), ("self_attn.k_proj", 64, H),
            ("self_attn.v_proj", 64, H), ("self_attn.o_proj", H, 128),
            ("mlp.gate_proj", 128, H), ("mlp.up_proj", 128, H), ("mlp.down_proj", H, 128),
        ):
            tensors.update(fn(f"{p}.{name}", out, inp, g))
        tensors[f"{p}.input_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
        tensors[f"{p}.post_attention_layernorm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors[f"{prefix}embed_tokens.weight"] = _w(256, H, g)
    tensors[f"{prefix}norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors[f"{lm_head}.weight"] = _w(256, H, g)
    cfg: dict[str, Any] = {
        "architectures": [arch], "model_type": "llama", "hidden_size": H,
        "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 64, "intermediate_size": 128, "vocab_size": 256,
    }
    qc = make_cfg(["lm_head", "re:.*lm_head"])
    if qc:
        cfg["quantization_config"] = qc
    cfg.update(config or {})
    return Built(cfg, tensors)


@_memo
def qwen3_moe(scheme: str = "gptq", *, group: int = 128, experts: int = 4,
              hidden: int = 256, moe_inter: int = 256, seed: int = 0) -> Built:
    """A 2-layer Qwen3-MoE (``Qwen3MoeForCausalLM``) as AutoGPTQ / GPTQModel / AutoAWQ export
    it (Qwen's own ``-GPTQ-Int4`` / ``-AWQ`` releases): attention and every routed expert
    ``mlp.experts.<e>.{gate,up,down}_proj`` packed with ``scheme`` (``gptq`` or ``awq`` at
    ``group``; any other builder scheme at its own settings); the router ``mlp.gate``,
    ``q_norm``/``k_norm``, norms, embeddings and ``lm_head`` F16/BF16. 4 heads of 64 (2 KV)."""
    fn, make_cfg = _schemes()[scheme]
    if scheme in ("gptq", "awq"):
        base = fn

        def fn(name: str, out: int, inp: int, g: torch.Generator) -> Tensors:
            return base(name, out, inp, g, group)  # type: ignore[call-arg]
    g = torch.Generator().manual_seed(seed)
    heads, kv, hd = 4, 2, 64
    tensors: Tensors = {}
    for layer in (0, 1):
        p = f"model.layers.{layer}"
        linear = [(f"{p}.self_attn.q_proj", heads * hd, hidden),
                  (f"{p}.self_attn.k_proj", kv * hd, hidden),
                  (f"{p}.self_attn.v_proj", kv * hd, hidden),
                  (f"{p}.self_attn.o_proj", hidden, heads * hd)]
        for e in range(experts):
            linear += [(f"{p}.mlp.experts.{e}.gate_proj", moe_inter, hidden),
                       (f"{p}.mlp.experts.{e}.up_proj", moe_inter, hidden),
                       (f"{p}.mlp.experts.{e}.down_proj", hidden, moe_inter)]
        for name, out, inp in linear:
            tensors.update(fn(name, out, inp, g))
        tensors[f"{p}.mlp.gate.weight"] = _w(experts, hidden, g)
        for norm in ("self_attn.q_norm", "self_attn.k_norm"):
            tensors[f"{p}.{norm}.weight"] = torch.ones(hd, dtype=torch.bfloat16)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[f"{p}.{norm}.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    tensors["model.embed_tokens.weight"] = _w(256, hidden, g)
    tensors["model.norm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    tensors["lm_head.weight"] = _w(256, hidden, g)
    config: dict[str, Any] = {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "hidden_size": hidden, "num_hidden_layers": 2, "num_attention_heads": heads,
        "num_key_value_heads": kv, "head_dim": hd, "intermediate_size": 2 * moe_inter,
        "moe_intermediate_size": moe_inter, "num_experts": experts, "num_experts_per_tok": 2,
        "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "vocab_size": 256, "tie_word_embeddings": False, "torch_dtype": "float16",
    }
    qc = make_cfg(["lm_head", "re:.*mlp.gate$"])
    if qc:
        qc = dict(qc)
        if "group_size" in qc:
            qc["group_size"] = group
        config["quantization_config"] = qc
    return Built(config, tensors)


#: DeepSeek-V4 dimensions of the tiny builder (the release's, divided down to 128 where a
#: block scheme needs whole blocks)
DSV4 = {"q_lora_rank": 128, "head_dim": 128, "num_attention_heads": 2, "o_groups": 2,
        "o_lora_rank": 128, "index_n_heads": 2, "index_head_dim": 128}


def _dsv4_attention(fn: SchemeFn, tensors: Tensors, p: str, ratio: int,
                    g: torch.Generator) -> None:
    """One layer's ``attn``: DeepSeek's own names (vLLM ``DeepseekV4Attention``'s shapes)."""
    q, hd, nh = DSV4["q_lora_rank"], DSV4["head_dim"], DSV4["num_attention_heads"]
    ng, ol = DSV4["o_groups"], DSV4["o_lora_rank"]
    for name, out, inp in ((f"{p}.wq_a", q, H), (f"{p}.wkv", hd, H),
                           (f"{p}.wq_b", nh * hd, q), (f"{p}.wo_a", ng * ol, nh * hd // ng),
                           (f"{p}.wo_b", H, ng * ol)):
        tensors.update(fn(name, out, inp, g))
    tensors[f"{p}.q_norm.weight"] = torch.ones(q, dtype=torch.bfloat16)
    tensors[f"{p}.kv_norm.weight"] = torch.ones(hd, dtype=torch.bfloat16)
    tensors[f"{p}.attn_sink"] = torch.zeros(nh)
    if ratio == 0:
        return
    coff = 1 + (ratio == 4)
    compressors = [(f"{p}.compressor", hd)]
    if ratio == 4:  # only the C4 layers index (vLLM: ``if self.compress_ratio == 4``)
        ih, nih = DSV4["index_head_dim"], DSV4["index_n_heads"]
        tensors.update(fn(f"{p}.indexer.wq_b", nih * ih, q, g))
        tensors[f"{p}.indexer.weights_proj.weight"] = _w(nih, H, g)
        compressors.append((f"{p}.indexer.compressor", ih))
    for c, dim in compressors:  # built with quant_config=None: BF16
        tensors[f"{c}.wkv.weight"] = _w(coff * dim, H, g)
        tensors[f"{c}.wgate.weight"] = _w(coff * dim, H, g)
        tensors[f"{c}.ape"] = torch.zeros(ratio, coff * dim)
        tensors[f"{c}.norm.weight"] = torch.ones(dim, dtype=torch.bfloat16)


@_memo
def deepseek_v4(scheme: str = "ct-fp8-block", *, experts: str | None = None,
                shared: str | None = None, seed: int = 0) -> Built:
    """A 2-layer DeepSeek-V4 (``DeepseekV4ForCausalLM``) in DeepSeek's release naming
    (``layers.<i>.attn.wq_a``, ``layers.<i>.ffn.experts.<e>.w1``, ``embed``, ``head``, an MTP
    layer ``mtp.0``): attention with ``scheme``, routed experts with ``experts`` and shared
    experts with ``shared`` (both default to ``scheme``); the router ``ffn.gate``,
    compressors, the indexer's ``weights_proj``, norms, hyper-connection vectors, ``embed``
    and ``head`` BF16/F32. Layer 0
    hash-routes (``tid2eid``), layer 1 compresses at ratio 4 (compressor and indexer).
    ``deepseek_v4("dsv4-fp8", experts="dsv4-mxfp4")`` is the deepseek-ai release format."""
    fn, make_cfg = _schemes()[scheme]
    efn = _schemes()[experts or scheme][0]
    sfn = _schemes()[shared or scheme][0]
    g = torch.Generator().manual_seed(seed)
    tensors: Tensors = {}
    hc = 4
    for layer, ratio in ((0, 0), (1, 4)):
        p = f"layers.{layer}"
        _dsv4_attention(fn, tensors, f"{p}.attn", ratio, g)
        for e in range(E):
            for w, out, inp in (("w1", I_MOE, H), ("w3", I_MOE, H), ("w2", H, I_MOE)):
                tensors.update(efn(f"{p}.ffn.experts.{e}.{w}", out, inp, g))
        for w, out, inp in (("w1", I_MOE, H), ("w3", I_MOE, H), ("w2", H, I_MOE)):
            tensors.update(sfn(f"{p}.ffn.shared_experts.{w}", out, inp, g))
        tensors[f"{p}.ffn.gate.weight"] = _w(E, H, g)
        if layer == 0:
            tensors[f"{p}.ffn.gate.tid2eid"] = torch.zeros(256, 1, dtype=torch.int32)
        else:
            tensors[f"{p}.ffn.gate.bias"] = torch.zeros(E)
        for norm in ("attn_norm", "ffn_norm"):
            tensors[f"{p}.{norm}.weight"] = torch.ones(H, dtype=torch.bfloat16)
        for part in ("attn", "ffn"):
            tensors[f"{p}.hc_{part}_fn"] = torch.zeros((2 + hc) * hc, hc * H)
            tensors[f"{p}.hc_{part}_base"] = torch.zeros((2 + hc) * hc)
            tensors[f"{p}.hc_{part}_scale"] = torch.ones(3)
    m = "mtp.0"  # the draft layer: loaded by vLLM's DeepSeekV4MTP, not the main model
    for name, out, inp in ((f"{m}.e_proj", H, H), (f"{m}.h_proj", H, H)):
        tensors.update(fn(name, out, inp, g))
    _dsv4_attention(fn, tensors, f"{m}.attn", 0, g)
    for norm in ("enorm", "hnorm", "norm", "attn_norm", "ffn_norm"):
        tensors[f"{m}.{norm}.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors[f"{m}.head.weight"] = _w(256, H, g)  # vLLM's mtp.py: -> shared_head.head
    tensors[f"{m}.emb.tok_emb.weight"] = _w(256, H, g)  # -> embed_tokens
    tensors["embed.weight"] = _w(256, H, g)
    tensors["head.weight"] = _w(256, H, g)
    tensors["norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    tensors["hc_head_fn"] = torch.zeros(hc, hc * H)
    tensors["hc_head_base"] = torch.zeros(hc)
    tensors["hc_head_scale"] = torch.ones(1)
    config: dict[str, Any] = {
        "architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
        "hidden_size": H, "num_hidden_layers": 2, "num_key_value_heads": 1,
        "compress_ratios": [0, 4, 0], "num_hash_layers": 1, "n_routed_experts": E,
        "n_shared_experts": 1, "num_experts_per_tok": 1, "moe_intermediate_size": I_MOE,
        "num_nextn_predict_layers": 1, "hc_mult": hc, "vocab_size": 256,
        "expert_dtype": "fp4", "topk_method": "noaux_tc", "tie_word_embeddings": False,
        **DSV4,
    }
    ignore = ["head", "embed", "re:.*ffn\\.gate$", "re:.*compressor\\..*",
              "re:.*indexer\\.weights_proj$"]
    qc = make_cfg(ignore)
    if qc:
        config["quantization_config"] = qc
    return Built(config, tensors)
