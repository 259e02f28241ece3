#!/usr/bin/env python3
"""qscale oracle wrapper: SMALLER real-tool checkpoints + golden dumps of what real vLLM loads.

This file does not re-implement the generator. It imports the shared driver
(``make_real_ckpts.py``; path from $QS_ORACLE_DRIVER, default ``<repo>/../shared/oracle/
make_real_ckpts.py``) as a module, swaps in smaller model configs and a smaller vocabulary, points
the driver's ``__file__`` at this wrapper (the driver re-runs ``sys.executable __file__ llmc1 ...``
in subprocesses, so those also get the small configs), and dispatches to the driver's commands.

Driver commands (run with the python of the venv in brackets, see oracle/README.md):
    base [names]                       [venv]           tiny BF16 models -> $QS_CKPT_ROOT/base
    llmc [SCHEMES] [--models a,b]      [venv]           llm-compressor (+ the DeepSeek NEG case)
    quark [job-substr]                 [venv-quark]     AMD Quark
    modelopt [CFGS] [--models a,b]     [venv-modelopt]  NVIDIA ModelOpt
    linear_oracle CKPT [prefix]        [venv-vllm*]     one MergedColumnParallelLinear (in_proj_qkvz)
    tvshim SITE_PACKAGES               [any]            torchvision CPU import shim
    dump CKPT [substr]                 [any]            quantization_config + tensor table
Commands added/extended here:
    oracle CKPT                        [venv-vllm*]  driver's oracle + init-value capture + error capture
          QS_ORACLE_OUT=x.safetensors: loaded params; also writes x.init.safetensors (params right
          after construction, numel <= 4096) and x.status.json ({"load": "ok"|"error", ...}).
    oracle_all [substr..]              [venv-vllm*]  oracle (one subprocess per ckpt) for every
          checkpoint under $QS_CKPT_ROOT/{base,llmc,quark,modelopt}; raw dumps -> $QS_ORACLE_RAW
    golden [substr..]                  [venv-vllm*]  raw dumps -> tests/fixtures/vllm_golden/*.json
          ($QS_GOLDEN_SUFFIX, e.g. "@vllm-0.19.1", is appended to the file name)
    linear_golden CKPT NAME            [venv-vllm*]  unit-level oracle (in_proj_qkvz only) -> golden
    fixtures                           [any]         copy the selected checkpoints to tests/fixtures/real
    gptoss_mxfp4                       [venv]        gpt_oss checkpoint in transformers' own mxfp4 format
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
DRIVER = Path(os.environ.get("QS_ORACLE_DRIVER", REPO / ".." / "shared" / "oracle" / "make_real_ckpts.py")).resolve()
RAW = Path(os.environ.get("QS_ORACLE_RAW", "/work/oracle-work/oracle-raw"))
GOLDEN_DIR = REPO / "tests" / "fixtures" / "vllm_golden"
FIXTURE_DIR = REPO / "tests" / "fixtures" / "real"
SMALL_VOCAB = 256
INIT_MAX_NUMEL = 4096      # params up to this size are snapshotted right after construction
VALUES_MAX_NUMEL = 64      # golden "values"/"init_values" only for params this small

_spec = importlib.util.spec_from_file_location("make_real_ckpts", DRIVER)
drv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drv)
drv.__file__ = str(HERE)          # driver subprocesses (llmc1/quark1/modelopt1) re-run THIS file
drv.VOCAB = SMALL_VOCAB           # read at call time by write_tiny_tokenizer / calib_dataset


# --------------------------------------------------------------------------- smaller configs
def small_configs():
    """Like the driver's tiny_configs(), but 2 decoder layers, 4 experts (top-2), vocab 256 and
    a minimal vision tower. Every Linear in/out feature (and every merged shard) stays a
    multiple of 128: W4A16 group 128 and vLLM's FP8 block 128 need it."""
    from transformers import AutoConfig

    V = SMALL_VOCAB
    cfgs = {}
    # GDN: key_dim = 2*64 = 128, value_dim = 4*64 = 256 -> in_proj_qkvz shards [128,128,256,256]
    # (value_dim != key_dim on purpose, so a slot/offset mix-up shows); in_proj_qkv 512 rows,
    # in_proj_z 256 rows. Full attention: 2 q heads (q_proj has the output gate: 2*2*64 = 256
    # rows), 2 kv heads (k: 128).
    lin = dict(linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64,
               linear_value_head_dim=64, linear_conv_kernel_dim=4)
    cfgs["qwen3_next"] = AutoConfig.for_model(
        "qwen3_next", vocab_size=V, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, head_dim=64, **lin,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128,
        shared_expert_intermediate_size=128, decoder_sparse_step=1, mlp_only_layers=[],
        full_attention_interval=2, max_position_embeddings=256, tie_word_embeddings=False,
    )
    text = dict(
        vocab_size=V, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=64, **lin,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128,
        shared_expert_intermediate_size=128, full_attention_interval=2,
        max_position_embeddings=256, tie_word_embeddings=False,
    )
    cfgs["qwen3_5_moe_text"] = AutoConfig.for_model("qwen3_5_moe_text", **text)
    cfgs["qwen3_5_moe"] = AutoConfig.for_model(
        "qwen3_5_moe", text_config=text,
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                           out_hidden_size=128, num_position_embeddings=16, patch_size=8,
                           spatial_merge_size=2, temporal_patch_size=2),
        tie_word_embeddings=False,
    )
    cfgs["qwen2_moe"] = AutoConfig.for_model(
        "qwen2_moe", vocab_size=V, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, num_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=128, shared_expert_intermediate_size=128,
        max_position_embeddings=256, tie_word_embeddings=False,
    )
    # q_lora_rank set -> vLLM builds fused_qkv_a_proj = [q_a_proj 128, kv_a_proj_with_mqa 256]
    cfgs["deepseek_v2"] = AutoConfig.for_model(
        "deepseek_v2", vocab_size=V, hidden_size=128, intermediate_size=128,
        moe_intermediate_size=128, num_hidden_layers=2, first_k_dense_replace=1,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4, n_shared_experts=1,
        num_experts_per_tok=2, n_group=1, topk_group=1, q_lora_rank=128, kv_lora_rank=128,
        qk_rope_head_dim=128, qk_nope_head_dim=32, v_head_dim=32, max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    # head_dim 32 with 4 q/kv heads: q,k,v,o all 128x128 (keeps the BF16 base under ~1.2 MB)
    cfgs["gpt_oss"] = AutoConfig.for_model(
        "gpt_oss", vocab_size=V, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, head_dim=32, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=64, max_position_embeddings=256,
        layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=False,
    )
    return cfgs


drv.tiny_configs = small_configs


# --------------------------------------------------------------------------- oracle extension
def _stem(out):
    return str(out).removesuffix(".safetensors").removesuffix(".loaded")


def _status_path(out):
    return Path(_stem(out) + ".status.json")


def _init_path(out):
    return Path(_stem(out) + ".init.safetensors")


def _sentinel_empty():
    """During model construction, make torch.empty deterministic: floats -> NaN, ints -> max.
    Then a slot that vLLM never writes shows up as NaN/max instead of arbitrary memory."""
    import contextlib
    import torch

    @contextlib.contextmanager
    def cm():
        orig = torch.empty

        def empty(*a, **k):
            t = orig(*a, **k)
            try:
                if t.is_floating_point():
                    t.fill_(float("nan"))
                elif t.dtype != torch.bool and not t.is_complex():
                    t.fill_(torch.iinfo(t.dtype).max)
            except Exception:
                pass
            return t

        torch.empty = empty
        try:
            yield
        finally:
            torch.empty = orig

    return cm()


def _safe_register_kernels():
    orig = drv._register_cpu_emulation_kernels

    def reg():
        try:
            orig()
        except Exception as e:  # older vLLM: other module layout
            print(f"[oracle] _register_cpu_emulation_kernels skipped: {type(e).__name__}: {e}")

    drv._register_cpu_emulation_kernels = reg


def _install_old_vllm_shims():
    """Module-path differences in older vLLM releases the driver imports from, and the CPU
    platform: before ~0.3x, vLLM only picks CpuPlatform when its *version string* contains
    "cpu" (VLLM_TARGET_DEVICE is ignored), so a CUDA wheel on a CPU box gets
    UnspecifiedPlatform ("Device string must not be empty"). Force CpuPlatform then."""
    import types
    try:  # the registry inspects each model class in a fresh `python -c` (to keep CUDA
        # uninitialized): a full vLLM import per architecture (~60 s on 2 busy cores). No
        # CUDA here: inspect in-process.
        import vllm.model_executor.models.registry as reg
        reg._run_in_subprocess = lambda fn: fn()
    except Exception as e:
        print(f"[oracle] registry in-process inspection not patched: {e}")
    if os.environ.get("VLLM_TARGET_DEVICE") == "cpu":
        import vllm.platforms as P
        cur = P._current_platform
        if cur is None or type(cur).__name__ == "UnspecifiedPlatform":
            from vllm.platforms.cpu import CpuPlatform
            P._current_platform = CpuPlatform()
        # CpuPlatform has no device capability, so compressed-tensors would pick the W8A16-FP8
        # scheme (which, e.g. in 0.19/0.20, creates input_scale with torch.empty instead of
        # float32-min). Pretend every scheme is supported so the GPU scheme (W8A8-FP8) is built.
        try:
            from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors \
                import CompressedTensorsConfig
            CompressedTensorsConfig._check_scheme_supported = staticmethod(
                lambda min_capability, error=True, match_exact=False: True)
        except Exception as e:
            print(f"[oracle] could not patch _check_scheme_supported: {e}")
        try:  # same for Quark ("No quark compatible scheme was found" otherwise)
            from vllm.model_executor.layers.quantization.quark.quark import QuarkConfig
            QuarkConfig._check_scheme_supported = lambda self, *a, **k: True
        except Exception as e:
            print(f"[oracle] could not patch QuarkConfig._check_scheme_supported: {e}")
    try:
        import vllm.utils.torch_utils  # noqa: F401
    except Exception:
        from vllm.model_executor.model_loader.utils import set_default_torch_dtype
        m = types.ModuleType("vllm.utils.torch_utils")
        m.set_default_torch_dtype = set_default_torch_dtype
        sys.modules["vllm.utils.torch_utils"] = m


def _calls_path(out):
    return Path(_stem(out) + ".calls.json")


def _js(v):
    if isinstance(v, tuple | list):
        return [_js(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


def _record_weight_loader_calls(model, out):
    """Wrap every parameter's ``weight_loader`` and the module-level ``default_weight_loader``
    of every imported vLLM module, and the checkpoint iterator given to ``model.load_weights``,
    so that each outermost loader call is logged as [checkpoint tensor, vLLM param, shard_id,
    expert_id]. The checkpoint tensor is the one whose data pointer the loader got, else the
    one the iterator yielded last (vLLM's loaders stream). Written to <stem>.calls.json with
    the yielded names that reached no loader ("uncalled")."""
    import functools
    import inspect

    import vllm.model_executor.model_loader.weight_utils as wu

    names = {id(p): n for n, p in model.named_parameters()}
    calls, yielded, by_ptr, cur, depth = [], [], {}, {"name": None}, [0]

    def wrap(fn):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None

        @functools.wraps(fn)
        def w(param, loaded_weight, *a, **k):
            if depth[0]:
                return fn(param, loaded_weight, *a, **k)
            shard = expert = None
            if sig is not None:
                try:
                    b = sig.bind(param, loaded_weight, *a, **k).arguments
                    shard = b.get("shard_id", b.get("loaded_shard_id"))
                    expert = b.get("expert_id")
                except TypeError:
                    pass
            src = cur["name"]
            try:
                src = by_ptr.get(loaded_weight.data_ptr(), src) or src
            except Exception:
                pass
            calls.append([src, names.get(id(param), "?"), _js(shard), _js(expert)])
            depth[0] += 1
            try:
                return fn(param, loaded_weight, *a, **k)
            finally:
                depth[0] -= 1

        w.__qs_wrapped__ = True
        return w

    for p in model.parameters():
        fn = getattr(p, "weight_loader", None)
        if fn is not None and not getattr(fn, "__qs_wrapped__", False):
            try:
                p.weight_loader = wrap(fn)
            except AttributeError:
                p._weight_loader = wrap(fn)
    orig_default = wu.default_weight_loader
    wrapped_default = wrap(orig_default)
    for m in list(sys.modules.values()):
        if (getattr(m, "__name__", "") or "").startswith("vllm") and \
                getattr(m, "default_weight_loader", None) is orig_default:
            m.default_weight_loader = wrapped_default
    orig_lw = model.load_weights

    def feed(weights):
        for n, t in weights:
            cur["name"] = n
            yielded.append(n)
            try:
                ptr = t.data_ptr()
                by_ptr[ptr] = None if ptr in by_ptr and by_ptr[ptr] != n else n
            except Exception:
                pass
            yield n, t

    def load_weights(weights, *a, **k):
        try:
            return orig_lw(feed(weights), *a, **k)
        finally:
            called = {c[0] for c in calls}
            _calls_path(out).write_text(json.dumps(
                {"calls": calls, "uncalled": [n for n in yielded if n not in called]}))

    model.load_weights = load_weights


def _quant_methods(model, mc):
    """What vLLM picked: the config's quantization name and, per module that has a
    ``quant_method``, its class (with, in brackets, the ``MPLinearKernel`` an AutoGPTQ/AutoAWQ
    linear method chose, or the scheme an ``INCLinearMethod`` wraps).
    Recorded as ``quantization`` and ``quant_methods`` {class: [modules...]}."""
    by_cls: dict = {}
    for name, mod in model.named_modules():
        qm = getattr(mod, "quant_method", None)
        if qm is None or not name:
            continue
        cls = type(qm).__name__
        kernel = getattr(qm, "kernel", None) or getattr(qm, "_kernel", None) or \
            getattr(qm, "scheme", None)  # INCLinearMethod(scheme)
        if kernel is not None:
            cls += f"[{type(kernel).__name__}]"
        by_cls.setdefault(cls, []).append(name)
    return {"quantization": getattr(mc, "quantization", None), "quant_methods": by_cls}


def _inc_moe_as_gpu():
    """$QS_ORACLE_INC_MOE_AS_GPU=1: build INC (auto-round) integer routed experts as a GPU
    does. vLLM 0.32/0.33 ``INCWna16Scheme.get_moe_method`` (inc/schemes/inc_wna16_scheme.py)
    returns ``UnquantizedFusedMoEMethod`` when ``current_platform.is_cpu()`` ("CPU does not
    support quantized MoE yet"), and the packed expert tensors then find no parameter. With
    this set, that one call sees a non-CPU platform and takes the GPTQ/AWQ MoE path
    (AutoGPTQMoEMethod / AutoAWQMoEMethod, or MoeWNA16Method), whose parameters do not depend
    on the platform."""
    if not os.environ.get("QS_ORACLE_INC_MOE_AS_GPU"):
        return None
    try:
        from vllm.model_executor.layers.quantization.inc.schemes import inc_wna16_scheme as m
    except ImportError:
        return None
    orig = m.INCWna16Scheme.get_moe_method
    plat = m.current_platform

    def get_moe_method(self, *a, **k):
        real = plat.is_cpu
        plat.is_cpu = lambda: False
        try:
            return orig(self, *a, **k)
        finally:
            plat.is_cpu = real

    m.INCWna16Scheme.get_moe_method = get_moe_method
    return "INCWna16Scheme.get_moe_method sees a non-CPU platform (QS_ORACLE_INC_MOE_AS_GPU)"


def run_oracle(args):
    """Driver's oracle, plus: snapshot of small params right after construction (before load),
    and a status file telling at which stage an exception happened."""
    import torch

    out = os.environ.get("QS_ORACLE_OUT")
    state = {"stage": "import"}

    def write_status(**kw):
        if out:
            _status_path(out).write_text(json.dumps(
                dict(stage=state["stage"], **state.get("methods", {}), **kw), indent=1))

    try:
        import vllm
        _install_old_vllm_shims()
        _safe_register_kernels()
        if patch := _inc_moe_as_gpu():
            state["methods"] = {"oracle_patch": patch}
        import vllm.model_executor.model_loader as ml
        import vllm.model_executor.model_loader.utils as mlu

        orig_init = mlu.initialize_model

        def initialize_model(*a, **k):
            state["stage"] = "construct"
            with _sentinel_empty():
                m = orig_init(*a, **k)
            state["stage"] = "constructed"
            state["methods"] = {**state.get("methods", {}),
                                **_quant_methods(m, k.get("model_config"))}
            return m

        mlu.initialize_model = initialize_model
        orig_get = ml.get_model_loader

        def get_model_loader(*a, **k):
            loader = orig_get(*a, **k)
            orig_lw = loader.load_weights

            def load_weights(model, *la, **lk):
                if out:
                    from safetensors.torch import save_file
                    snap = {n: p.data.detach().clone().contiguous()
                            for n, p in model.named_parameters() if p.numel() <= INIT_MAX_NUMEL}
                    save_file(snap, str(_init_path(out)))
                    _record_weight_loader_calls(model, out)
                state["stage"] = "load"
                r = orig_lw(model, *la, **lk)
                state["stage"] = "loaded"
                return r

            loader.load_weights = load_weights
            return loader

        ml.get_model_loader = get_model_loader
        state["stage"] = "config"
        drv.run_oracle(args)
    except BaseException as e:
        import traceback
        traceback.print_exc()
        write_status(load="error", error=f"{type(e).__name__}: {e}",
                     vllm_version=_vllm_version())
        sys.exit(1)
    write_status(load="ok", vllm_version=_vllm_version())


def _vllm_version():
    try:
        import vllm
        return vllm.__version__
    except Exception:
        return None


KINDS = ("base", "llmc", "quark", "modelopt", "hand", "autoround", "gptqmodel")


def all_ckpts(subs=None):
    root = Path(os.environ.get("QS_CKPT_ROOT", "./oracle-work/ckpts"))
    res = []
    for kind in KINDS:
        for d in sorted((root / kind).glob("*")):
            if (d / "config.json").exists() and any(d.glob("*.safetensors")):
                tag = f"{kind}-{d.name}"
                if subs and not any(s in tag for s in subs):
                    continue
                res.append((tag, d))
    return res


# Without these, vLLM's create_engine_config spends ~80 s waiting on Hugging Face Hub
# look-ups that cannot succeed offline (config 0.4 s with them).
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _oracle_one(tag, d, suffix):
    out = RAW / f"{tag}{suffix}.loaded.safetensors"
    for p in (out, _init_path(out), _status_path(out), _calls_path(out)):
        p.unlink(missing_ok=True)
    t0 = time.time()
    log = RAW / f"{tag}{suffix}.log"
    with open(log, "w") as f:
        try:
            rc = subprocess.run([sys.executable, str(HERE), "oracle", str(d)], stdout=f,
                                stderr=subprocess.STDOUT, timeout=900,
                                env=dict(_OFFLINE, **os.environ, QS_ORACLE_OUT=str(out))).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    return _summarize(tag, out, log, rc, t0)


def _oracle_forked(tag, d, suffix):
    """Like _oracle_one, but in a child forked from this (already vLLM-importing) process:
    the ~15-60 s import is paid once instead of per checkpoint."""
    out = RAW / f"{tag}{suffix}.loaded.safetensors"
    for p in (out, _init_path(out), _status_path(out), _calls_path(out)):
        p.unlink(missing_ok=True)
    t0 = time.time()
    log = RAW / f"{tag}{suffix}.log"
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1); os.dup2(fd, 2)
            os.environ["QS_ORACLE_OUT"] = str(out)
            run_oracle([str(d)])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            code = 1
        finally:
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
    rc = "timeout"
    while time.time() - t0 < 900:
        r, status = os.waitpid(pid, os.WNOHANG)
        if r:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.2)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return _summarize(tag, out, log, rc, t0)


def _summarize(tag, out, log, rc, t0):
    st = json.loads(_status_path(out).read_text()) if _status_path(out).exists() else {}
    proc = ""
    for line in log.read_text(errors="replace").splitlines():
        if "process_weights_after_loading FAILED" in line:
            proc = " | process: " + line.split("FAILED:", 1)[-1].strip()[:120]
    line = (f"{tag:50s} rc={rc} {time.time()-t0:5.1f}s load={st.get('load', '?')} "
            f"{(st.get('error') or '')[:200]}{proc}").replace("\n", " ")
    print(line, flush=True)
    return line


def run_oracle_fork(args):
    """oracle_all, sequential, one fork per checkpoint (vLLM imported once in the parent)."""
    for k, v in _OFFLINE.items():
        os.environ.setdefault(k, v)
    import torch  # noqa: F401
    import vllm  # noqa: F401
    _install_old_vllm_shims()
    import vllm.engine.arg_utils  # noqa: F401
    import vllm.model_executor.model_loader.utils  # noqa: F401
    RAW.mkdir(parents=True, exist_ok=True)
    suffix = os.environ.get("QS_GOLDEN_SUFFIX", "")
    summary = [_oracle_forked(t, d, suffix) for t, d in all_ckpts(args)]
    with open(RAW / f"summary{suffix}.txt", "a") as f:
        f.write("\n".join(summary) + "\n")


def run_oracle_all(args):
    """One subprocess per checkpoint ($QS_ORACLE_JOBS in parallel, default 1)."""
    from concurrent.futures import ThreadPoolExecutor

    RAW.mkdir(parents=True, exist_ok=True)
    suffix = os.environ.get("QS_GOLDEN_SUFFIX", "")
    jobs = int(os.environ.get("QS_ORACLE_JOBS", "1"))
    with ThreadPoolExecutor(jobs) as ex:
        summary = list(ex.map(lambda td: _oracle_one(td[0], td[1], suffix), all_ckpts(args)))
    with open(RAW / f"summary{suffix}.txt", "a") as f:
        f.write("\n".join(summary) + "\n")


def _tensor_entry(t, init=None):
    import torch

    flat = t.detach().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    e = {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
         "sha256": hashlib.sha256(raw).hexdigest()}

    def vals(x):
        x = x.detach().reshape(-1)
        if x.is_floating_point():
            return [_jf(v) for v in x.double().tolist()]
        return x.tolist()

    if t.numel() <= VALUES_MAX_NUMEL:
        e["values"] = vals(t)
        if init is not None and init.numel() == t.numel():
            e["init_values"] = vals(init)
    return e


def _jf(v):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def write_golden(tag, loaded_path, status, init_path=None, name=None, extra=None):
    from safetensors.torch import load_file

    ckpt = tag.replace("-", "/", 1)
    g = {"vllm_version": status.get("vllm_version"), "checkpoint": ckpt,
         "load": status.get("load", "error")}
    if g["load"] != "ok":
        g["error"] = status.get("error", "unknown (no status written)")
        g["stage"] = status.get("stage")
    for k in ("quantization", "quant_methods", "oracle_patch"):
        if k in status:  # recorded since the WNA16 goldens (oracle/wna16_ckpts.py)
            g[k] = status[k]
    if extra:
        g.update(extra)
    params = {}
    if g["load"] == "ok" and loaded_path and Path(loaded_path).exists():
        loaded = load_file(str(loaded_path))
        init = load_file(str(init_path)) if init_path and Path(init_path).exists() else {}
        for n in sorted(loaded):
            params[n] = _tensor_entry(loaded[n], init.get(n))
    g["params"] = params
    calls = _calls_path(loaded_path) if loaded_path else None
    if calls is not None and calls.exists():
        g.update(json.loads(calls.read_text()))  # "calls": [[ckpt, param, shard, expert]...]
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    p = GOLDEN_DIR / f"{name or tag}.json"
    p.write_text(json.dumps(g, indent=1) + "\n")
    return p


def run_golden(args):
    suffix = os.environ.get("QS_GOLDEN_SUFFIX", "")
    for st_path in sorted(RAW.glob(f"*{suffix}.status.json")):
        tag = st_path.name[: -len(f"{suffix}.status.json")]
        if "@" in tag and not suffix:
            continue
        if args and not any(s in tag for s in args):
            continue
        st = json.loads(st_path.read_text())
        out = RAW / f"{tag}{suffix}.loaded.safetensors"
        p = write_golden(tag, out, st, _init_path(out), name=f"{tag}{suffix}")
        print(f"[golden] {p.name}: load={st.get('load')} ({p.stat().st_size} B)")


def run_linear_golden(args):
    """Unit-level oracle for older vLLM: feed in_proj_qkv/in_proj_z of CKPT through ONE
    MergedColumnParallelLinear via the driver's linear_oracle, capture the layer's params
    (construction + after load) and write a golden named NAME."""
    import torch
    import vllm
    _install_old_vllm_shims()
    _safe_register_kernels()
    from vllm.model_executor.layers import linear as vl

    captured = {}
    orig_cls = vl.MergedColumnParallelLinear

    class Capturing(orig_cls):
        def __init__(self, *a, **k):
            with _sentinel_empty():
                super().__init__(*a, **k)
            captured["layer"] = self
            captured["init"] = {n: p.data.detach().clone() for n, p in self.named_parameters()}

    vl.MergedColumnParallelLinear = Capturing
    ckpt, name = args[0], args[1]
    prefix = args[2] if len(args) > 2 else "model.language_model.layers.0.linear_attn"
    status = {"vllm_version": vllm.__version__}
    try:
        drv.run_linear_oracle([ckpt, prefix])
        status["load"] = "ok"
    except BaseException as e:
        import traceback
        traceback.print_exc()
        status.update(load="error", error=f"{type(e).__name__}: {e}", stage="linear_oracle")
    from safetensors.torch import save_file
    RAW.mkdir(parents=True, exist_ok=True)
    loaded = RAW / f"{name}.loaded.safetensors"
    init = RAW / f"{name}.init.safetensors"
    if "layer" in captured:
        pre = prefix.replace("model.language_model.", "language_model.model.") + ".in_proj_qkvz."
        save_file({pre + n: p.data.contiguous() for n, p in captured["layer"].named_parameters()},
                  str(loaded))
        save_file({pre + n: t.contiguous() for n, t in captured["init"].items()}, str(init))
    p = write_golden(Path(ckpt).parent.name + "-" + Path(ckpt).name, loaded, status, init,
                     name=name, extra={"oracle": "linear_oracle (one MergedColumnParallelLinear "
                                       "in_proj_qkvz fed in_proj_qkv as shard (0,1,2) and "
                                       "in_proj_z as shard 3)"})
    print(f"[linear_golden] {p}")


# --------------------------------------------------------------------------- fixtures
FIXTURES = [
    "llmc/qwen3_5_moe-FP8", "llmc/qwen3_5_moe-FP8_DYNAMIC", "llmc/qwen3_5_moe-FP8_BLOCK",
    "llmc/qwen3_5_moe-W4A16", "llmc/qwen3_5_moe-NVFP4", "llmc/qwen3_5_moe-MXFP4",
    "llmc/qwen3_next-FP8", "llmc/deepseek_v2-FP8", "llmc/deepseek_v2-FP8-NEG-mixed-fused_qkv_a",
    "llmc/qwen2_moe-W4A16", "llmc/gpt_oss-W4A16", "base/gpt_oss",
    "quark/qwen3_5_moe-MXFP4-f2f", "quark/qwen3_5_moe-MXFP4-la-f2f", "quark/qwen3_5_moe-FP8-la-f2f",
    "modelopt/qwen3_5_moe_text-FP8", "modelopt/qwen3_5_moe_text-NVFP4", "modelopt/qwen3_next-NVFP4",
]
KEEP = ("config.json", "hf_quant_config.json", "quantization_config.json", "recipe.yaml")


def run_fixtures(args):
    root = Path(os.environ.get("QS_CKPT_ROOT", "./oracle-work/ckpts"))
    total = 0
    for rel in args or FIXTURES:
        src = root / rel
        if not src.exists():
            print(f"[fixtures] MISSING {rel}")
            continue
        dst = FIXTURE_DIR / rel.replace("/", "-", 1)
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        for f in sorted(src.iterdir()):
            if f.name in KEEP or f.name.endswith(".safetensors") or f.name.endswith(".safetensors.index.json"):
                shutil.copy2(f, dst / f.name)
        size = sum(f.stat().st_size for f in dst.iterdir())
        total += size
        print(f"[fixtures] {dst.name:48s} {size/1e6:6.3f} MB {'OVER 1.2MB' if size > 1.2e6 else ''}")
    print(f"[fixtures] total {total/1e6:.2f} MB")


# --------------------------------------------------------------------------- gpt-oss mxfp4
def run_gptoss_mxfp4(args):
    """gpt_oss in the *native* gpt-oss mxfp4 layout (quant_method: mxfp4, *_blocks/*_scales),
    written by transformers' own Mxfp4 quantizer (Mxfp4Config(dequantize=False)), if it runs on
    CPU. It does not here: transformers 5.17 refuses without Triton >= 3.5 and then fetches
    kernels-community/gpt-oss-triton-kernels from the HF Hub (unreachable), so this is skipped."""
    import torch
    from transformers import AutoModelForCausalLM, Mxfp4Config

    src = drv.BASE / "gpt_oss"
    out = drv.BASE / "gpt_oss-mxfp4"
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16,
                                                 quantization_config=Mxfp4Config())
    model.save_pretrained(out)
    print(f"[gptoss_mxfp4] OK -> {out}")


# --------------------------------------------------------------------------- main
def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "base"
    args = sys.argv[2:]
    local = {"oracle": run_oracle, "oracle_all": run_oracle_all, "golden": run_golden,
             "oracle_fork": run_oracle_fork, "linear_golden": run_linear_golden, "fixtures": run_fixtures,
             "gptoss_mxfp4": run_gptoss_mxfp4}
    if cmd in local:
        return local[cmd](args)
    if cmd == "base":
        return drv.build_base(args or None)
    if cmd == "dump":
        return drv.dump(Path(args[0]), args[1:] or None)
    if cmd == "linear_oracle":
        _install_old_vllm_shims()
        _safe_register_kernels()
    fn = getattr(drv, f"run_{cmd}", None)
    if fn is None:
        sys.exit(f"unknown command {cmd}")
    return fn(args)


if __name__ == "__main__":
    main()
