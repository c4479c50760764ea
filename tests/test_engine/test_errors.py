"""Which exceptions the tools report as one-line config mistakes, and which keep a traceback."""

from __future__ import annotations

import pytest
from torch import nn

from mmvmamba.checkpoint import CheckpointError
from mmvmamba.engine.errors import SetupDoneHook, config_errors, is_config_mistake


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


class _RaisesInForward(nn.Module):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def forward(self, x):
        raise self.exc


def _raised_in_forward(exc: BaseException) -> BaseException:
    try:
        _RaisesInForward(exc)(1)
    except BaseException as caught:
        return caught
    raise AssertionError("the module did not raise")


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError("config file 'x.py' does not exist"),
        KeyError("VMambaa is not in the mmseg::model registry"),
        TypeError("VMamba.__init__() got an unexpected keyword argument 'embed_dims'"),
        ValueError("unknown arch 'tinyy'"),
        CheckpointError("the checkpoint does not fit"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_config_mistakes(exc):
    assert is_config_mistake(_raised(exc))


def test_runtime_errors_and_errors_inside_a_forward_are_not_config_mistakes():
    assert not is_config_mistake(_raised(RuntimeError("size mismatch")))
    assert not is_config_mistake(_raised(ZeroDivisionError()))
    # a ValueError raised while a module runs is a bug in the model, whatever its type
    assert not is_config_mistake(_raised_in_forward(ValueError("bad shape")))
    # ... also when a framework re-raised it with another message (mmengine's build_from_cfg)
    try:
        try:
            _RaisesInForward(ValueError("bad shape"))(1)
        except ValueError as inner:
            raise ValueError(f"class `X` in x.py: {inner}")  # noqa: B904  (implicit chaining)
    except ValueError as outer:
        assert not is_config_mistake(outer)


def test_config_errors_one_line_and_traceback(capsys):
    with pytest.raises(SystemExit) as stop, config_errors():
        raise KeyError("VMambaa is not in the mmseg::model registry")
    assert stop.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: KeyError: VMambaa is not in the mmseg::model registry"
    with pytest.raises(RuntimeError, match="inside"), config_errors():
        raise RuntimeError("inside the model")
    with pytest.raises(ValueError, match="arch"), config_errors(debug=True):
        raise ValueError("unknown arch")
    hook = SetupDoneHook()
    hook.before_train(runner=None)  # the run has started: everything keeps its traceback
    with pytest.raises(ValueError, match="arch"), config_errors(setup_hook=hook):
        raise ValueError("unknown arch")
    assert capsys.readouterr().err == ""
