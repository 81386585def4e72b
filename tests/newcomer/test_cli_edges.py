"""Issue 22, item 6: small edges a new user meets on the command line and in the Python API."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vision_tl.cli import main


@pytest.mark.slow
def test_info_json_into_a_closed_pipe_exits_quietly(tiny_model):
    model, _ = tiny_model
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, "-m", "vision_tl.cli", "info", str(model), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    # the reader goes away before the command writes (importing takes a second): a small manifest could
    # otherwise fit the pipe's buffer whole after a first line was read, and the write would never fail
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == ""


def test_python_export_says_where_it_wrote(tiny_model, tmp_path, capsys):
    _, dls = tiny_model
    from vision_tl import vision_learner

    learn = vision_learner(dls, "resnet10t", pretrained=False)
    path = learn.export("here.vtl")  # relative: under the data folder, as in fastai
    assert capsys.readouterr().out.strip() == f"exported to {path.resolve()}"
    assert path.parent == dls.path
    path.unlink()


@pytest.mark.slow
def test_multi_label_predict_prints_a_header_and_says_where_the_csv_went(tmp_path, capsys):
    from vision_tl import ImageDataLoaders, Resize, vision_learner
    from vision_tl.data.synthetic import make_synthetic_multi_label

    data = make_synthetic_multi_label(tmp_path / "data", n_images=12, size=32, seed=1)
    dls = ImageDataLoaders.from_csv(data, "labels.csv", label_delim=" ", valid_col="is_valid", item_tfms=Resize(32),
                                    num_workers=0)
    model = vision_learner(dls, "resnet10t", pretrained=False).export(tmp_path / "ml.vtl", verbose=False)
    out_csv = tmp_path / "p.csv"
    code = main(["predict", str(model), str(data / "images"), "--csv", str(out_csv)])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert lines[0].split("\t") == ["file", "labels", *dls.vocab]
    rows = [line.split("\t") for line in lines[1:]]
    assert sorted(Path(r[0]).name for r in rows) == sorted(f.name for f in (data / "images").iterdir())
    for file, labels, *probs in rows:
        assert len(probs) == len(dls.vocab) and all(0 <= float(p) <= 1 for p in probs), file
        shown = set(labels.split()) if labels else set()  # the labels column: the classes above the threshold
        assert shown == {c for c, p in zip(dls.vocab, probs) if float(p) > 0.5}, file
    assert f"wrote 12 predictions to {out_csv}" in out.err
    assert list(csv.DictReader(open(out_csv)))[0].keys() == {"file", "labels", *dls.vocab}


def test_demo_plots_name_the_classes_cat_and_dog(monkeypatch, tmp_path):
    import torch

    from vision_tl import ClassificationInterpretation, demo

    figures = []
    monkeypatch.setattr(demo, "_save", lambda plt, fig, fname: figures.append(getattr(fig, "figure", fig)) or fname)
    monkeypatch.setattr(demo, "_plot_losses", lambda plt, hist: None)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    interp = ClassificationInterpretation(["False", "True"], probs, torch.tensor([0, 1, 1]),
                                          items=[tmp_path / f"{i}.jpg" for i in range(3)])
    try:
        demo._plots(interp, None, tmp_path)
    except Exception:  # noqa: BLE001 - top losses may need the images; the confusion matrix is drawn first
        pass
    labels = {t.get_text() for fig in figures if fig is not None for ax in fig.axes for t in ax.get_xticklabels()}
    assert {"cat", "dog"} <= labels and not {"False", "True"} & labels
    assert interp.vocab == ["False", "True"]  # the caller's interpretation is left as it was
