"""Tensors an exporter writes that the engine has no parameter for and never reads, dropped
(safe; QS203).

The scheme names them (:attr:`qscale.schemes.QuantScheme.unregistered`): FP-Quant's
``backward_hadamard_matrix``, which FP-Quant's exporter and fp_quant's ``FPQuantLinear``
store for training's backward pass. vLLM 0.18.0-0.22.1 register it and never read it
(``FPQuantLinearMethod.apply`` uses the forward matrix alone); from 0.23.0 there is no such
parameter and the load stops on it. Leaving it out changes nothing the engine computes, in
any release; every other tensor is kept byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator

from qscale.findings import Applicability
from qscale.fix.context import FixContext
from qscale.fix.model import Change, DropTensor, Refusal

NAME = "drop-unregistered"


def plan(ctx: FixContext) -> Iterator[Change | Refusal]:
    """One safe change dropping every tensor a QS203 finding names that the module's scheme
    lists as unregistered."""
    found, drops = [], []
    for f in ctx.findings("QS203"):
        name = f.location.tensor or ""
        module, _, param = name.rpartition(".")
        mq = ctx.quant.modules.get(module)
        t = ctx.checkpoint.tensors.get(name)
        if mq is None or mq.scheme is None or t is None:
            continue
        if param not in dict(mq.scheme.unregistered):
            continue
        found.append(f)
        drops.append(DropTensor(name, t.file))
    if not found:
        return
    params = sorted({d.name.rpartition(".")[2] for d in drops})
    yield Change(
        fixer=NAME,
        title=f"Drop {len(drops)} tensor(s) the engine has no parameter for"
              f" ({', '.join(f'`{p}`' for p in params)})",
        applicability=Applicability.SAFE,
        edits=tuple(drops),
        resolves=tuple(found),
        detail="the engine never reads them (vLLM 0.18.0-0.22.1 load them into a parameter"
               " its forward does not use); every other tensor is kept as it is",
    )
