"""This server's limits on what a job's networks may cost (``max_model_params``,
``max_model_flops``, ``max_activation_mb``), so that a spec the schema allows (NB201 with 256
channels and 20 cells per stage, a declared space of 63 linear layers of 65,536 units) is refused
at submission instead of costing a worker tens of gigabytes.

At submission (``check_job``, called by the API) the space's own count of the most its networks
cost for the job's data (``scion.space.largest_costs``, computed without torch) is checked, and a
refusal names the choice of the space to shrink. A worker checks the one network it is about to
build (``network_over_limits``) with the data as loaded: a file dataset's class count is known
only then, and a submission counts it as 2, the fewest a dataset has.

Activations are counted in float32 at the largest batch a network of the job trains with (the
evaluator's batch size, or the largest a declared space searches).
"""
from __future__ import annotations

from typing import Any

from scion.configs.datasets import ImageFolderConfig, NPZConfig, npz_plan
from scion.data_paths import DataPathError
from scion.errors import Invalid
from scion.settings import get_settings
from scion.space import Costs, InvalidSpace, largest_costs, network_costs, searched_settings
from scion.spec import JobRequest, make_space

BYTES_PER_VALUE = 4  # float32
FEWEST_CLASSES = 2  # a file dataset's class count before its labels are read


def data_signature(dataset: Any) -> tuple[tuple[int, ...], int] | None:
    """(input shape, class count) of a dataset as far as a submission knows it without reading
    its data: a built-in's, an npz file's shape from its header, an image folder's from its settings;
    None when nothing tells."""
    if dataset.input_shape is not None:
        return tuple(dataset.input_shape), int(dataset.num_classes or FEWEST_CLASSES)
    if isinstance(dataset, NPZConfig):
        try:
            return npz_plan(dataset)[2], FEWEST_CLASSES
        except DataPathError:
            return None  # changed since the spec's own check read it: a worker finds out
    if isinstance(dataset, ImageFolderConfig):
        return (3 if dataset.color == "rgb" else 1, *dataset.height_width), FEWEST_CLASSES
    return None


def training_batch(request: JobRequest, space: Any) -> tuple[int, str]:
    """The largest batch a network of the job trains with, and the field that sets it."""
    batch, field = request.evaluator.batch_size, "evaluator.batch_size"
    searched = searched_settings(space).get("batch_size")
    if searched and max(searched) > batch:
        batch, field = max(searched), "space.hyperparameters.batch_size"
    return batch, field


def figure(n: float) -> str:
    """A count as a person reads it: 12,345 below a million, 2.1e9 above."""
    return f"{n:,.0f}" if n < 1e6 else f"{n:.3g}".replace("e+0", "e").replace("e+", "e")


def over_limits(costs: Costs, batch: int, batch_field: str) -> list[tuple[str, str]]:
    """Per cost over this server's limit, (the cost's name, what the network costs and the limit)."""
    settings = get_settings()
    memory_mib = costs.activations * batch * BYTES_PER_VALUE / 2**20
    checks = [
        ("params", costs.params > settings.max_model_params,
         f"has {figure(costs.params)} parameters, above this server's limit of {figure(settings.max_model_params)} "
         "(SCION_MAX_MODEL_PARAMS)"),
        ("flops", costs.flops > settings.max_model_flops,
         f"computes {figure(costs.flops)} FLOPs per example, above this server's limit of "
         f"{figure(settings.max_model_flops)} (SCION_MAX_MODEL_FLOPS)"),
        ("activations", memory_mib > settings.max_activation_mb,
         f"keeps about {memory_mib:,.0f} MiB of activations for a training batch of {batch} ({batch_field}), "
         f"above this server's limit of {settings.max_activation_mb:,.0f} MiB (SCION_MAX_ACTIVATION_MB)"),
    ]
    return [(name, message) for name, over, message in checks if over]


def check_job(request: JobRequest) -> None:
    """Raise Invalid, naming the choice to shrink, when a network of the job may cost more than
    this server allows: for a search, the most any network of its space costs; for a retrain
    job, its one architecture. A job that builds no network (a table lookup) passes."""
    dataset = getattr(request.evaluator, "dataset", None)
    signature = data_signature(dataset) if dataset is not None and request.space is not None else None
    if signature is None:
        return
    space = make_space(request.space)
    batch, batch_field = training_batch(request, space)
    try:
        if request.kind == "retrain":
            costs = network_costs(space, request.retrain.arch, *signature)
            over = over_limits(costs, batch, batch_field) if costs is not None else []
            if over:
                raise Invalid("retrain.arch", f"the network {over[0][1]}; retrain a smaller architecture")
            return
        largest = largest_costs(space, *signature)
    except InvalidSpace:
        return  # a network that cannot take a file dataset's inputs: the worker's build says why
    if largest is None:
        return
    over = over_limits(largest.costs, batch, batch_field)
    if over:
        name, message = over[0]
        field, advice = largest.shrink[name]
        batch_advice = f", or {batch_field}" if name == "activations" else ""
        raise Invalid(f"space.{field}", f"the largest network {message}; {advice}{batch_advice}")


def network_over_limits(space: Any, arch: Any, input_shape: tuple[int, ...], num_classes: int,
                        batch: int) -> str | None:
    """Why a worker must not build ``arch`` for this data (its cost over a limit), or None."""
    costs = network_costs(space, arch, input_shape, num_classes)
    over = over_limits(costs, batch, "the batch size") if costs is not None else []
    return f"the network {over[0][1]}; it was not built" if over else None


__all__ = ["check_job", "data_signature", "figure", "network_over_limits", "over_limits", "training_batch"]
