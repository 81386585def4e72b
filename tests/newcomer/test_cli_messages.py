"""Issue 22, item 3: the command line speaks in one-line warnings and errors, in its own words (flags, not
Python), checks in the order a user fixes things; a script's failed download is a short traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from vision_tl.cli import main
from vision_tl.cli_messages import one_line


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_warnings_are_one_line_each_without_file_line_or_code(tiny_model, class_folder, capsys):
    model, _ = tiny_model
    code, _, err = _cli(capsys, "evaluate", model, class_folder)  # every image of its training set is in there
    assert code == 0, err
    warning = [line for line in err.splitlines() if "training set" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: ")
    assert "UserWarning" not in err and ".py:" not in err and "warnings.warn" not in err


def test_a_missing_data_folder_is_reported_before_an_existing_output_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr_find.png").write_bytes(b"an old plot")
    code, out, err = _cli(capsys, "lr-find", tmp_path / "no_such_folder")
    assert code == 1 and "does not exist" in err and "no_such_folder" in err and "already exists" not in err
    (tmp_path / "a_file").write_text("x")
    code, out, err = _cli(capsys, "train", tmp_path / "a_file", "--out", tmp_path / "lr_find.png")
    assert code == 1 and "is a file, not a folder" in err


def test_errors_do_not_name_python_functions(class_folder, tmp_path, capsys):
    assert one_line(FileNotFoundError("from_folder: no 'train' folder in 'x'"), (FileNotFoundError,)) == \
        "no 'train' folder in 'x'"
    code, _, err = _cli(capsys, "train", class_folder, "--label-from", "csv", "missing.csv", "--out", tmp_path / "m.vtl")
    assert code == 1 and "from_csv" not in err and "--label-from csv: no CSV file" in err


def test_the_weights_error_names_the_flags_not_python(class_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VISION_TL_HOME", str(tmp_path / "home"))
    code, _, err = _cli(capsys, "train", class_folder, "--arch", "resnet10t", "--size", "32", "--num-workers", "0",
                        "--out", tmp_path / "m.vtl")
    if code == 0:
        pytest.skip("pretrained resnet10t weights are cached on this machine")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "--weights FILE" in err and "--no-pretrained" in err
    assert "weights=" not in err and "pretrained=False" not in err


@pytest.mark.slow
def test_a_failed_download_in_a_script_is_a_short_traceback(tmp_path):
    script = textwrap.dedent(f"""
        from vision_tl import untar_data
        untar_data("http://127.0.0.1:9/pets.tgz", data={str(tmp_path)!r}, archive={str(tmp_path)!r},
                   show_progress=False)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "DownloadError" in r.stderr.splitlines()[-1]
    assert "giving up" in r.stderr and "During handling" not in r.stderr and "direct cause" not in r.stderr
    assert len(r.stderr.splitlines()) < 20


def test_an_error_during_a_progress_bar_gets_a_line_of_its_own(capsys):
    from tqdm import tqdm

    from vision_tl.cli_messages import say

    bar = tqdm(total=10, desc="valid", file=sys.stderr, mininterval=0)
    bar.update(3)
    say("vision-tl train: error: cannot use image cut.jpg")
    bar.close()
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert "vision-tl train: error: cannot use image cut.jpg" in lines
