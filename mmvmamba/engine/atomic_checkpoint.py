"""Crash-safe checkpointing: a checkpoint is complete on disk before anything points at it.

mmengine's ``CheckpointHook`` writes ``iter_N.pth`` in place, rewrites ``last_checkpoint`` in
place, and deletes the oldest checkpoint (``max_keep_ckpts``) *before* saving the new one. A
process killed during a save (SIGKILL, OOM killer, preempted node) can therefore leave a
truncated checkpoint, an empty ``last_checkpoint``, or no good checkpoint at all.

:class:`AtomicCheckpointHook` is a drop-in ``CheckpointHook`` that

1. writes every file to a temporary file in the same directory, flushes and fsyncs it, then
   ``os.replace``s it onto the final name (atomic on POSIX and Windows): a reader sees the old
   file or the complete new one, never a partial one;
2. updates ``last_checkpoint`` the same way, only after the checkpoint is in place;
3. deletes old checkpoints only after the new one and ``last_checkpoint`` are in place.

Use it as the default checkpoint hook::

    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1000))
"""

from __future__ import annotations

import os
import os.path as osp
import tempfile
from pathlib import Path

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from ..registry import register_hook

__all__ = ["ATOMIC_BACKEND", "AtomicCheckpointHook", "AtomicLocalBackend", "atomic_write_bytes"]

ATOMIC_BACKEND = "atomic_local"


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen partially written.

    The bytes go to a temporary file next to ``path`` (same file system), which is flushed,
    fsynced and then renamed onto ``path`` with :func:`os.replace`. If the process dies before the
    rename, ``path`` keeps its previous content (a stray ``.tmp`` file may remain).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable (directory entry); not possible on every platform
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, with :meth:`put` / :meth:`put_text` made atomic."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        """Write bytes to ``filepath`` atomically (temporary file + ``os.replace``)."""
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        """Write text to ``filepath`` atomically."""
        atomic_write_bytes(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


@register_hook
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose checkpoints and ``last_checkpoint`` are written atomically.

    Accepts every argument of :class:`mmengine.hooks.CheckpointHook`; only local directories are
    supported (``backend_args`` naming another backend raise ValueError). The resume target
    (``<work_dir>/last_checkpoint``) always names a complete checkpoint, and the previous good
    checkpoint is deleted (``max_keep_ckpts``) only after the new one is complete.
    """

    def __init__(self, *args, backend_args: dict | None = None, **kwargs) -> None:
        backend_args = dict(backend_args or {})
        backend = backend_args.pop("backend", "local")
        if backend not in ("local", ATOMIC_BACKEND):
            raise ValueError(
                f"AtomicCheckpointHook writes to local directories only, got backend={backend!r}; "
                "use mmengine's CheckpointHook for remote storage"
            )
        if kwargs.get("file_client_args") is not None:
            raise ValueError("AtomicCheckpointHook: use backend_args, not file_client_args")
        backend_args["backend"] = ATOMIC_BACKEND
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """Save, point ``last_checkpoint`` at the new file, then drop the oldest checkpoint."""
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)

        to_remove = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))

        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        atomic_write_bytes(self.last_ckpt.encode(), osp.join(runner.work_dir, "last_checkpoint"))

        if to_remove is not None and to_remove != step:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(to_remove))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):  # DeepSpeed checkpoints are directories
                self.file_backend.rmtree(old)
