"""Runner hooks of mmvmamba."""

from __future__ import annotations

import re

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..checkpoint.hooks import convert_for_loading
from ..checkpoint.io import CheckpointError, diff_state_dict


@HOOKS.register_module()
class CheckpointKeysHook(Hook):
    """Compare a checkpoint given by ``load_from`` with the model before mmengine loads it.

    mmengine's ``Runner.load_checkpoint`` loads with ``strict=False``: a checkpoint of another
    model only logs a warning and evaluates a half-initialised network. With ``strict=True``
    this hook raises :class:`~mmvmamba.checkpoint.CheckpointError` naming the missing,
    unexpected and mis-shaped keys; with ``strict=False`` it logs the same report. The
    ``state_dict`` entry of the checkpoint (or the checkpoint itself) is compared after
    stripping a ``module.`` prefix, as mmengine does, and after the conversions the model's
    backbones apply while loading (official names, resized position embeddings).
    """

    priority = "VERY_HIGH"

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:  # noqa: D102
        state = checkpoint.get("state_dict", checkpoint)
        state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        report = diff_state_dict(model.state_dict(), convert_for_loading(model, state))
        if report.ok:
            runner.logger.info("checkpoint keys: all keys match the model")
            return
        message = f"the checkpoint does not fit {type(model).__name__}: {report.describe()}"
        if self.strict:
            raise CheckpointError(
                message + ". Check that config and checkpoint belong together, or pass "
                "--non-strict to tools/test.py to load the matching keys anyway."
            )
        runner.logger.warning(message)
