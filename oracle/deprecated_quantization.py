"""Real vLLM's start-up verdict on a deprecated quantization method (QS106's oracle).

Builds vLLM's ``ModelConfig`` (where ``_verify_quantization`` refuses the methods of
``DEPRECATED_QUANTIZATION_METHODS``) for a checkpoint folder, without and with
``allow_deprecated_quantization``, and prints what each does. CPU only, no weights loaded.

    /work/oracle-work/venv-vllm0330/bin/python oracle/deprecated_quantization.py CKPT

Run on 2026-12-03 with vLLM 0.33.0 on a tests/builders.py ``dense("LlamaForCausalLM",
"fbgemm-fp8")`` checkpoint: without the flag a ValidationError ("The quantization method
fbgemm_fp8 is deprecated and will be removed in future versions of vLLM. To bypass, set
`--allow-deprecated-quantization`."), with it the config builds (quantization fbgemm_fp8).
"""

from __future__ import annotations

import sys


def main(path: str) -> int:
    from vllm.config import ModelConfig

    for allow in (False, True):
        try:
            mc = ModelConfig(model=path, tokenizer=None, skip_tokenizer_init=True,
                             allow_deprecated_quantization=allow)
        except Exception as exc:  # pydantic's ValidationError wraps the ValueError
            print(f"allow_deprecated_quantization={allow}: refused: {exc}")
        else:
            print(f"allow_deprecated_quantization={allow}: builds, quantization={mc.quantization}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
