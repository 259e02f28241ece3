"""A `.safetensors` file in the folder that the index does not list.

## What it checks
Lists the `*.safetensors` files of the folder (or of the Hub repo) and compares them with the
files the index's `weight_map` names.

## Why it matters
Engines load only indexed files (vLLM 0.33 `model_loader/weight_utils.py`,
`filter_duplicate_safetensors_files`, keeps the files `weight_map` names), so a stray file
(often a leftover of an earlier export, or a file of another variant copied in) loads
without error and is silently ignored: any weights in it are not served. qscale reads the
indexed files only, as the engine does, and goes on with the check.

## Example
`model-extra.safetensors`: not listed in model.safetensors.index.json; engines ignore it

## Fix
Remove the file, or rebuild the index if it belongs.
"""

from collections.abc import Iterator

from qscale.findings import Location
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule, Severity

FIX = Fix("remove the file, or rebuild the index if it belongs", Applicability.MANUAL)


def check(ctx: Context) -> Iterator[Finding]:
    """One warning per ``.safetensors`` file the index does not list."""
    index = ctx.checkpoint.index_file
    for name in ctx.checkpoint.unindexed:
        yield RULE.finding(
            f"`{name}`: not listed in {index}; engines load only indexed files and ignore it",
            Location(file=name),
            fix=FIX,
        )


RULE = Rule(
    code="QS008",
    name="unindexed-file",
    severity=Severity.WARNING,
    doc=__doc__ or "",
    check=check,
)
