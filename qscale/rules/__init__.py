"""ALL_RULES (ordered by code), REMOVED codes, and rule selection."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from qscale.errors import UsageError
from qscale.rules import (
    qs001_unreadable_header,
    qs002_broken_data_layout,
    qs003_tensor_size_mismatch,
    qs004_unknown_dtype,
    qs005_duplicate_tensor,
    qs006_index_missing_file,
    qs007_index_tensor_mismatch,
    qs008_unindexed_file,
    qs009_path_outside_checkpoint,
    qs010_engine_version_not_modelled,
    qs101_invalid_quantization_config,
    qs102_unsupported_quant_method,
    qs103_architecture_not_modelled,
    qs104_conflicting_quantization_configs,
    qs105_architecture_not_served,
    qs106_deprecated_quantization_method,
    qs201_missing_quantization_tensor,
    qs202_module_stored_unquantized,
    qs203_unexpected_quantization_tensor,
    qs204_ignore_entry_mismatch,
    qs205_fused_shard_missing,
    qs206_quantized_head_unsupported,
    qs207_draft_layer_quantization_mismatch,
    qs208_expert_count_mismatch,
    qs209_misnamed_scale_tensor,
    qs301_tensor_dtype_mismatch,
    qs302_tensor_shape_mismatch,
    qs303_degenerate_scale_value,
    qs304_group_index_mismatch,
    qs401_unfilled_scale_slot,
    qs402_engine_refuses_load,
    qs403_fused_scale_mismatch,
    qs404_tensors_silently_skipped,
    qs501_indivisible_partition,
    qs502_uneven_expert_split,
    qs503_fp8_block_misaligned_partition,
    qs504_fp8_block_partial_tile,
    qs505_group_misaligned_partition,
    qs506_packed_misaligned_partition,
    qs507_marlin_tile_misaligned_partition,
    qs601_shared_expert_format_mismatch,
    qs701_kv_cache_scales_missing,
    qs801_engine_bug_advisory,
)
from qscale.rules._api import Rule

ALL_RULES: tuple[Rule, ...] = (
    qs001_unreadable_header.RULE,
    qs002_broken_data_layout.RULE,
    qs003_tensor_size_mismatch.RULE,
    qs004_unknown_dtype.RULE,
    qs005_duplicate_tensor.RULE,
    qs006_index_missing_file.RULE,
    qs007_index_tensor_mismatch.RULE,
    qs008_unindexed_file.RULE,
    qs009_path_outside_checkpoint.RULE,
    qs010_engine_version_not_modelled.RULE,
    qs101_invalid_quantization_config.RULE,
    qs102_unsupported_quant_method.RULE,
    qs103_architecture_not_modelled.RULE,
    qs104_conflicting_quantization_configs.RULE,
    qs105_architecture_not_served.RULE,
    qs106_deprecated_quantization_method.RULE,
    qs201_missing_quantization_tensor.RULE,
    qs202_module_stored_unquantized.RULE,
    qs203_unexpected_quantization_tensor.RULE,
    qs204_ignore_entry_mismatch.RULE,
    qs205_fused_shard_missing.RULE,
    qs206_quantized_head_unsupported.RULE,
    qs207_draft_layer_quantization_mismatch.RULE,
    qs208_expert_count_mismatch.RULE,
    qs209_misnamed_scale_tensor.RULE,
    qs301_tensor_dtype_mismatch.RULE,
    qs302_tensor_shape_mismatch.RULE,
    qs303_degenerate_scale_value.RULE,
    qs304_group_index_mismatch.RULE,
    qs401_unfilled_scale_slot.RULE,
    qs402_engine_refuses_load.RULE,
    qs403_fused_scale_mismatch.RULE,
    qs404_tensors_silently_skipped.RULE,
    qs501_indivisible_partition.RULE,
    qs502_uneven_expert_split.RULE,
    qs503_fp8_block_misaligned_partition.RULE,
    qs504_fp8_block_partial_tile.RULE,
    qs505_group_misaligned_partition.RULE,
    qs506_packed_misaligned_partition.RULE,
    qs507_marlin_tile_misaligned_partition.RULE,
    qs601_shared_expert_format_mismatch.RULE,
    qs701_kv_cache_scales_missing.RULE,
    qs801_engine_bug_advisory.RULE,
)
#: Codes that existed once; never reuse them.
REMOVED: dict[str, str] = {}

BY_CODE = {r.code: r for r in ALL_RULES}


def get(code: str) -> Rule:
    """The rule with this code (case-insensitive) or kebab-case name."""
    key = code.upper()
    if key in BY_CODE:
        return BY_CODE[key]
    for r in ALL_RULES:
        if r.name == code.lower():
            return r
    if key in REMOVED:
        raise UsageError(f"rule {key} was removed: {REMOVED[key]}")
    raise UsageError(f"no rule {code!r}", hint="list them with `qscale rule --all`")


def _matches(rule: Rule, prefixes: Iterable[str]) -> bool:
    return any(rule.code.startswith(p.upper()) or rule.name == p.lower() for p in prefixes)


def select(select: Sequence[str] = (), ignore: Sequence[str] = ()) -> tuple[Rule, ...]:
    """Rules with a check, chosen by code, code prefix or name (ruff's --select/--ignore)."""
    for p in (*select, *ignore):
        if not any(_matches(r, [p]) for r in ALL_RULES):
            raise UsageError(
                f"--select/--ignore: {p!r} names no rule", hint="list them with `qscale rule --all`"
            )
    chosen = [r for r in ALL_RULES if r.check is not None]
    if select:
        chosen = [r for r in chosen if _matches(r, select)]
    return tuple(r for r in chosen if not _matches(r, ignore))
