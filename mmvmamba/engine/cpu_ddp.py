"""Distributed data parallel for CPU processes (gloo), where mmengine's wrapper assumes GPUs."""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for CPU processes (gloo): no ``device_ids``.

    torch's SyncBN only runs on accelerators, so SyncBN layers are reverted to BatchNorm:
    each process normalises with its own batch statistics, and after every training step the
    floating-point buffers (BatchNorm running mean/var) are averaged over the processes, so
    every rank holds the same model at all times (as SyncBN's global statistics would give).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device_ids: list | None = None,
        broadcast_buffers: bool = False,
        find_unused_parameters: bool = False,
        **kwargs,
    ) -> None:
        del device_ids  # the runner passes [LOCAL_RANK]; CPU modules must get None
        super().__init__(
            module=revert_sync_batchnorm(module),
            device_ids=None,
            broadcast_buffers=broadcast_buffers,
            find_unused_parameters=find_unused_parameters,
            **kwargs,
        )

    def train_step(self, data, optim_wrapper):  # noqa: D102
        log_vars = super().train_step(data, optim_wrapper)
        world = torch_dist.get_world_size()
        with torch.no_grad():
            for buf in self.module.buffers():
                if buf.is_floating_point():
                    torch_dist.all_reduce(buf)
                    buf.div_(world)
        return log_vars
