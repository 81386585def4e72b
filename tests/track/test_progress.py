"""Logs that suit a file: lines (never a redrawn bar) when stdout is not a terminal; quiet; the environment."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from vision_tl import Learner, accuracy
from vision_tl.train.progress import ProgressCallback, progress_mode

from .helpers import small_dls, tiny_model


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_mode_follows_the_terminal_the_setting_and_the_environment(monkeypatch):
    monkeypatch.delenv("VISION_TL_PROGRESS", raising=False)
    assert progress_mode(stream=FakeTTY()) == "bar" and progress_mode(stream=io.StringIO()) == "lines"
    assert progress_mode(False, stream=FakeTTY()) == "lines" and progress_mode("silent") == "silent"
    monkeypatch.setenv("VISION_TL_PROGRESS", "0")
    assert progress_mode(stream=FakeTTY()) == "lines"  # bars off even in a terminal
    assert progress_mode("bar", stream=FakeTTY()) == "bar"  # an explicit setting wins
    monkeypatch.setenv("VISION_TL_PROGRESS", "sometimes")
    with pytest.raises(ValueError, match="'sometimes'"):
        progress_mode()
    with pytest.raises(ValueError, match="'loud'"):
        ProgressCallback(progress="loud")


def _fit(folder, tmp_path, **kw):
    learn = Learner(small_dls(folder), tiny_model(), metrics=accuracy, path=tmp_path, device="cpu", **kw)
    learn.fit(2, lr=1e-2)
    return learn


def test_without_a_terminal_each_epoch_is_one_line_and_nothing_is_redrawn(class_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VISION_TL_PROGRESS", raising=False)
    learn = _fit(class_folder, tmp_path)  # pytest's captured stdout is not a terminal
    assert learn.progress.mode == "lines"
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [ln.split()[0] for ln in lines[1:]] == ["0", "1"]
    assert "\r" not in out + err and "\x1b" not in out + err and "%|" not in err  # no bar, no cursor moves


def test_lines_every_n_batches_when_asked(class_folder, tmp_path, capsys):
    learn = Learner(small_dls(class_folder), tiny_model(), path=tmp_path, device="cpu", progress=False)
    learn.progress.every = 2
    learn.fit(1)
    err = capsys.readouterr().err.splitlines()
    assert [ln.split("  ")[0] for ln in err] == ["epoch 1/1: 2/6", "epoch 1/1: 4/6"]  # 6 batches, none redrawn
    assert all("loss " in ln for ln in err)


def test_quiet_prints_nothing_anywhere(class_folder, tmp_path, capsys):
    _fit(class_folder, tmp_path, progress="silent")
    assert capsys.readouterr() == ("", "")


def test_warnings_stay_recordable_during_a_fit(class_folder, tmp_path):
    from vision_tl import Callback

    class Warn(Callback):
        def after_epoch(self):
            warnings.warn("from inside the fit", UserWarning, stacklevel=1)

    learn = Learner(small_dls(class_folder), tiny_model(), path=tmp_path, device="cpu", progress=False)
    with pytest.warns(UserWarning, match="from inside the fit"):
        learn.fit(1, cbs=Warn())
    before = warnings.showwarning
    learn.fit(1)
    assert warnings.showwarning is before  # the hook is gone after the fit


@pytest.mark.slow
def test_a_replaced_formatwarning_shapes_the_warnings_of_a_fit(class_folder, tmp_path):
    """The CLI's one-line ``warning: ...`` (a replaced ``warnings.formatwarning``) holds during a fit too,
    printed as a line of its own, never through a bar."""
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(f"""\
        import warnings
        from vision_tl import Callback, Learner
        from tests.track.helpers import small_dls, tiny_model

        warnings.formatwarning = lambda msg, *a, **k: f"warning: {{msg}}\\n"

        class Warn(Callback):
            def after_epoch(self):
                warnings.warn("bad image skipped", UserWarning)

        learn = Learner(small_dls({str(class_folder)!r}), tiny_model(), path={str(tmp_path)!r}, device="cpu")
        learn.fit(1, cbs=Warn())
        """))
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["warning: bad image skipped"]
