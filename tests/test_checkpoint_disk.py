"""A full disk while checkpointing: one line saying where and how much, nothing half-written, and the
previous complete checkpoint is still the one a resume takes."""

from __future__ import annotations

import errno

import pytest
import torch

from chatplan.errors import RuntimeFailure
from chatplan_train import checkpoint as ckpt


def test_full_disk_is_one_line_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    state = {"w": torch.zeros(1024)}
    ckpt.save_checkpoint(tmp_path, 3, 0, 1, {"optimizer": {}, "data": {}}, model_state=state, meta={"step": 3})
    real_save = torch.save

    def full(obj, f, *a, **kw):  # the disk is full: nothing can be written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(RuntimeFailure) as e:
        ckpt.save_checkpoint(tmp_path, 6, 0, 1, {"optimizer": {}, "data": {}}, model_state=state, meta={"step": 6})
    msg = str(e.value)
    assert "no space left on" in msg and "GiB needed" in msg and "--resume" in msg and "\n" not in msg
    monkeypatch.setattr(torch, "save", real_save)
    newest, _ = ckpt.latest_complete(tmp_path)
    assert newest is not None and newest.name == "step_00000003"  # step 6 is incomplete: never chosen
    assert not list((tmp_path / "checkpoints").rglob(".*.tmp"))  # no partial file left behind
    ckpt.save_checkpoint(tmp_path, 6, 0, 1, {"optimizer": {}, "data": {}}, model_state=state, meta={"step": 6})
    assert ckpt.latest_complete(tmp_path)[0].name == "step_00000006"  # space freed: saving works again
