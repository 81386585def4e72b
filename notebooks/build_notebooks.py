"""Write the tutorial notebooks with nbformat (outputs empty), so their source stays reviewable.

Run ``python notebooks/build_notebooks.py`` after editing the cells below; commit the ``.ipynb`` files.
Every notebook reads ``VISION_TL_NOTEBOOK_FAST=1`` (set by the test suite) to run on small
synthetic data with a tiny network, so CI executes each one top to bottom in seconds.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''import os
from pathlib import Path

import matplotlib

# CI sets VISION_TL_NOTEBOOK_FAST=1: small synthetic data and a tiny network, so the notebook runs in seconds.
FAST = os.environ.get("VISION_TL_NOTEBOOK_FAST") == "1"
if FAST:
    matplotlib.use("Agg")'''


def _nb(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: rebuilding changes only the cells that were edited
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


CATS_VS_DOGS = [
    ("md", """# Lesson 1: cats vs dogs

fastai's first lesson with vision_tl: download the Oxford-IIIT Pet photos, label each one *cat* or
*dog* from its file name, fine-tune an ImageNet-pretrained resnet34 for one epoch, and look at what it
got wrong. On a GPU this takes about a minute and reaches an error rate below 1%.

Without network access (or with `VISION_TL_NOTEBOOK_FAST=1`) the notebook uses a synthetic,
pets-like set with the same file names instead, and a small network trained from random weights."""),
    ("code", SETUP),
    ("code", """from vision_tl import (
    ClassificationInterpretation,
    ImageDataLoaders,
    Resize,
    URLs,
    error_rate,
    get_image_files,
    load_learner,
    make_synthetic_pets,
    untar_data,
    vision_learner,
)"""),
    ("md", """## The data

`untar_data` downloads the archive once into `~/.vision_tl/data` (checked against its known size and
checksum, see `datasets.md`) and returns the extracted folder. Later calls return it at once."""),
    ("code", """if not FAST:
    try:
        path = untar_data(URLs.PETS)
        arch, size, pretrained = "resnet34", 224, True
    except OSError as e:  # no network and no mirror: fall back to the synthetic set
        print(f"could not download the Oxford-IIIT Pet set ({e}); using synthetic pets instead")
        FAST = True
if FAST:
    path = make_synthetic_pets(Path("nb_data/pets"), n_images=64, seed=42)
    arch, size, pretrained = "resnet10t", 32, False
files = get_image_files(path/"images")
len(files), files[:3]"""),
    ("md", """The breed is in the file name, and the dataset's authors wrote **cat breeds with a capital
letter** (`Abyssinian_1.jpg`) and dog breeds without (`beagle_1.jpg`). That is our labelling rule:"""),
    ("code", """def is_cat(fname):
    return fname[0].isupper()

[(f.name, is_cat(f.name)) for f in files[:5]]"""),
    ("md", """`from_name_func` applies the rule to every file name, keeps 20% of the images aside for
validation (the same 20% every time, thanks to `seed=42`), and resizes each image to `size` pixels."""),
    ("code", """dls = ImageDataLoaders.from_name_func(path, files, valid_pct=0.2, seed=42, label_func=is_cat,
                                      item_tfms=Resize(size), bs=8 if FAST else 64,
                                      num_workers=0 if FAST else None)
dls.vocab, len(dls.train_ds), len(dls.valid_ds)"""),
    ("code", "dls.show_batch(max_n=6)"),
    ("md", """## Train

`vision_learner` puts a new head, sized to our two classes, on a pretrained body. `fine_tune(1)` first
trains only the head for one epoch (body frozen), then the whole network for one epoch with smaller
learning rates for the early layers."""),
    ("code", """learn = vision_learner(dls, arch, metrics=error_rate, pretrained=pretrained)
learn.fine_tune(1)"""),
    ("code", """loss, err = learn.validate()
print(f"error rate: {err:.4f}")"""),
    ("md", "## What went wrong?"),
    ("code", "learn.recorder.plot_loss();"),
    ("code", """interp = ClassificationInterpretation.from_learner(learn)
interp.plot_confusion_matrix();"""),
    ("code", "interp.plot_top_losses(6);"),
    ("md", """## Save it and use it

`export` writes one file (weights in safetensors + a JSON manifest: architecture, classes, image size,
normalisation). `load_learner` needs only that file, and never unpickles anything."""),
    ("code", """fname = learn.export("pets.vtl")  # a relative name goes next to the data; it prints where
predictor = load_learner(fname)
f = dls.valid_ds.items[0]  # an image the model was not trained on
label, idx, probs = predictor.predict(f)
said, truth = ("cat" if label == "True" else "dog"), ("cat" if is_cat(f.name) else "dog")
print(f"{f.name} -> {said} (p={float(probs[idx]):.3f}); it is a {truth}")
if FAST:
    print(f"Offline, this is a tiny network trained from random weights (no download) on {len(dls.train_ds)} "
          f"synthetic images, error rate {err:.2f}: wrong answers are expected. With the Oxford-IIIT Pet "
          "photos and ImageNet weights the error rate is below 1%.")"""),
]

YOUR_OWN_IMAGES = [
    ("md", """# Your own images

Put your photos in one folder per class, e.g. `my_images/cats/*.jpg`, `my_images/dogs/*.jpg`, and set
`path` below. If the folder does not exist the notebook writes a small synthetic stand-in, so you can
run it before collecting anything."""),
    ("code", SETUP),
    ("code", """from vision_tl import (
    ClassificationInterpretation,
    ImageDataLoaders,
    Resize,
    accuracy,
    aug_transforms,
    error_rate,
    get_image_files,
    make_synthetic_folder,
    verify_images,
    vision_learner,
)"""),
    ("code", """path = Path(os.environ.get("MY_IMAGES", "my_images"))
if not path.exists():
    make_synthetic_folder(path, classes=("circle", "square", "stripes"), n_per_class=16 if FAST else 60, seed=0)
    print(f"no {path} folder: wrote a synthetic stand-in (3 classes)")
sorted(p.name for p in path.iterdir() if p.is_dir())"""),
    ("md", """## Check the files

Photos from the web are sometimes truncated or not images at all. `verify_images` decodes every file
and returns the ones that fail; move them away before training."""),
    ("code", """files = get_image_files(path)
bad = verify_images(files)
print(f"{len(files)} images, {len(bad)} unreadable: {bad[:5]}")"""),
    ("md", """## Ask the doctor

`doctor` reads the whole set once and reports unreadable files, exact and near duplicates (and
whether a copy sits in both train and valid: a leak), suspect labels (a pretrained model's embeddings,
judged out of sample and ranked by `cleanlab`), class balance and odd images. It changes nothing; the
HTML report shows every finding with its picture, the most urgent first. The same check runs from the
shell: `vision-tl doctor my_images/ --html report.html --decisions decisions.csv`."""),
    ("code", """from vision_tl import doctor

kw = dict(arch="resnet10t", pretrained=False, size=32) if FAST else dict(arch="resnet34")
report = doctor(path, valid_pct=0.2, seed=42, **kw)
report.save_html("doctor_report.html")
print(report.summary())
report["label_issues"][:5]"""),
    ("md", """## DataLoaders

The label is the parent folder's name; 20% of the images (seeded) go to validation. `aug_transforms()`
adds fastai's default augmentation (flips, rotation, zoom, lighting) on whole batches."""),
    ("code", """size = 32 if FAST else 224
dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=42, item_tfms=Resize(size),
                                   batch_tfms=aug_transforms(), bs=8 if FAST else 32,
                                   num_workers=0 if FAST else None)
dls.show_batch(max_n=6)"""),
    ("md", """## Pick a learning rate

`lr_find` trains for a few dozen batches with a growing learning rate and plots the loss. A good
learning rate is where the loss falls fastest, before it blows up; the suggestion marks it."""),
    ("code", """arch = "resnet10t" if FAST else "resnet34"
learn = vision_learner(dls, arch, metrics=[error_rate, accuracy], pretrained=not FAST)
suggestion = learn.lr_find(num_it=20 if FAST else 100)
suggestion"""),
    ("code", """lr = suggestion.valley
learn.fine_tune(1 if FAST else 3, base_lr=lr)"""),
    ("md", "## Interpretation"),
    ("code", """interp = ClassificationInterpretation.from_learner(learn)
interp.plot_confusion_matrix();"""),
    ("code", """interp.plot_top_losses(6)
interp.most_confused(min_val=1)"""),
    ("md", """## Clean the data

As in fastai's chapter 2: the cleaner shows each class and split highest loss first, with a Keep /
Delete / class choice under each image. Your choices are kept while you switch class or split;
`to_decisions` writes them all to a CSV that `vision-tl doctor my_images/ --apply decisions.csv` acts
on (deleted files go to a quarantine folder, and `--undo JOURNAL` puts everything back)."""),
    ("code", """from vision_tl import ImageClassifierCleaner

cleaner = ImageClassifierCleaner(learn, max_n=8 if FAST else 50)
cleaner"""),
    ("code", """cleaner.delete(), cleaner.change()  # fastai's: the images on screen marked Delete or another class
cleaner.to_decisions("decisions.csv")"""),
    ("code", """fname = learn.export("my_classifier.vtl")
fname"""),
]

INFERENCE = [
    ("md", """# Inference with a saved learner

Load the file `learn.export` wrote, classify one image, a whole folder in batches, and export to
ONNX for runtimes without PyTorch. We use the model the demo exports (`vision-tl demo` writes
`demo_out/pets_classifier.vtl`); if it is not there yet, the next cell runs the demo first."""),
    ("code", SETUP),
    ("code", """from vision_tl import get_image_files, load_learner, run_demo

model_file = Path(os.environ.get("VISION_TL_MODEL", "demo_out/pets_classifier.vtl"))
if not model_file.exists():
    kw = dict(arch="resnet10t", size=32, n_images=40, bs=8) if FAST else {}
    run_demo(model_file.parent, **kw)
predictor = load_learner(model_file)
predictor"""),
    ("md", """The predictor carries everything it needs: the network, the class names (`vocab`), the resize
it was trained with and the normalisation."""),
    ("code", """images = get_image_files(model_file.parent / "data")[:32]
label, idx, probs = predictor.predict(images[0])
print(images[0].name, "->", label, f"p={float(probs[idx]):.3f}")
predictor.top_k(images[0], k=2)"""),
    ("md", "## Many images at once\n\n`predict_batch` decodes in worker processes and runs the network in batches."),
    ("code", """probs = predictor.predict_batch(images, bs=16, num_workers=0 if FAST else None)
labels = predictor.decode(probs)
list(zip([f.name for f in images[:5]], labels[:5]))"""),
    ("md", """## ONNX

The exported graph takes uint8 RGB images (NCHW, at the size the model was trained with), does the
scaling and normalisation itself, and returns softmax probabilities. We check it against PyTorch with
onnxruntime."""),
    ("code", """import numpy as np
import onnxruntime as ort  # installed with vision_tl, like onnx and onnxscript
import torch

from vision_tl import export_onnx

onnx_file = export_onnx(predictor, model_file.with_suffix(".onnx"))
sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
x = np.stack([predictor.preprocess(f) for f in images[:4]]).transpose(0, 3, 1, 2)  # uint8 NCHW
onnx_probs = sess.run(None, {"image": x})[0]
torch_probs = predictor.predict_batch(images[:4], num_workers=0).numpy()
print("ONNX:", predictor.decode(torch.from_numpy(onnx_probs)))
print("max |ONNX - torch| =", float(np.abs(onnx_probs - torch_probs).max()))
assert np.allclose(onnx_probs, torch_probs, atol=1e-4)"""),
    ("md", """## Serve it over HTTP

`vision-tl serve MODEL` puts the model behind a JSON API and a web page (see the README's "Serve it").
Here it runs in a subprocess on a free loopback port; we wait for `/health`, send an image's bytes to
`/predict` and compare with `predictor.predict`. From a terminal, open the printed URL in a browser for
the page (upload an image, see the top classes and the Grad-CAM overlay)."""),
    ("code", """import json
import socket
import subprocess
import sys
import time
import urllib.request

with socket.socket() as s:  # a free port on this machine
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "vision_tl.cli", "serve", str(model_file), "--port", str(port)])
url = f"http://127.0.0.1:{port}"
try:
    for _ in range(1200):  # the model loads in the background: /health answers 503 until it is ready
        try:
            with urllib.request.urlopen(url + "/health") as r:
                print(json.load(r))
            break
        except OSError:
            time.sleep(0.2)
    request = urllib.request.Request(url + "/predict?top_k=2", data=images[0].read_bytes(),
                                     headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request) as r:
        answer = json.load(r)
    print("page:", url + "/", "| API docs:", url + "/docs")
finally:
    server.terminate()  # SIGTERM: finishes what is in flight, exits 0
    print("server exit code:", server.wait(60))
assert answer["label"] == predictor.predict(images[0].read_bytes())[0]
answer["top_k"]"""),
]

MULTI_LABEL = [
    ("md", """# Multi-label classification from a CSV

Some images have several labels at once (a photo with a person *and* a bicycle). fastai's multi-label
chapter reads the labels from a CSV where each cell lists them separated by spaces; vision_tl does the
same with the same calls. Each image here shows one to three coloured shapes (offline, synthetic), and
the labels are the shapes present.

What changes from single-label: the targets are one-hot vectors, the loss is `BCEWithLogitsLossFlat`
(a sigmoid per class, chosen for you), the metrics are `accuracy_multi` and `F1ScoreMulti`, and a
prediction is the *set* of labels whose probability is above a threshold."""),
    ("code", SETUP),
    ("code", """from functools import partial

import matplotlib.pyplot as plt
import pandas as pd

from vision_tl import (
    BCEWithLogitsLossFlat,
    ClassificationInterpretation,
    F1ScoreMulti,
    ImageDataLoaders,
    Resize,
    accuracy_multi,
    load_learner,
    make_synthetic_multi_label,
    vision_learner,
)"""),
    ("md", """## The data

`labels.csv` has one row per image: the file, its labels separated by spaces, and whether it is in the
validation set (the layout of the PASCAL VOC CSV in fastai's book)."""),
    ("code", """size = 32 if FAST else 64
path = make_synthetic_multi_label(Path("nb_data/shapes"), n_images=64 if FAST else 600, size=size, seed=0)
df = pd.read_csv(path/"labels.csv")
df.head()"""),
    ("md", """`label_delim=" "` tells `from_csv` to split each cell into a list of labels; `valid_col` picks the
validation rows. The vocab is every label seen, sorted; each target is a one-hot float vector."""),
    ("code", """dls = ImageDataLoaders.from_csv(path, "labels.csv", label_delim=" ", valid_col="is_valid",
                                item_tfms=Resize(size), bs=8 if FAST else 32, num_workers=0 if FAST else None)
xb, yb = dls.one_batch()
dls.vocab, dls.multi_label, yb[:3]"""),
    ("code", "dls.show_batch(max_n=6)"),
    ("md", """## The same data with the DataBlock API

fastai's DataBlock names each step: images from the `fname` column, label lists from the `labels`
column split on spaces, the split from `is_valid`. `summary` walks one row through every step (and says
which step breaks, and on which row, when one does). It gives the same DataLoaders as `from_csv`."""),
    ("code", """from vision_tl import ColReader, ColSplitter, DataBlock, ImageBlock, MultiCategoryBlock

dblock = DataBlock(blocks=(ImageBlock, MultiCategoryBlock),
                   get_x=ColReader("fname", pref=path), get_y=ColReader("labels", label_delim=" "),
                   splitter=ColSplitter("is_valid"), item_tfms=Resize(size))
dblock.summary(df)
dls2 = dblock.dataloaders(df, bs=8 if FAST else 32, num_workers=0 if FAST else None)
assert dls2.vocab == dls.vocab and dls2.multi_label
dls2.show_batch(max_n=6)"""),
    ("md", """## Train

With multi-label data `vision_learner` picks `BCEWithLogitsLossFlat()` as the loss (threshold 0.5), as
fastai does. `accuracy_multi` counts every (image, label) decision; `F1ScoreMulti` averages the F1 of
each label (`average="macro"`, as scikit-learn). These shapes are drawn from scratch, so we train a small
network from random weights with `fit_one_cycle`; with a pretrained body use `fine_tune` as usual."""),
    ("code", """arch = "test_resnet" if FAST else "resnet18"
learn = vision_learner(dls, arch, pretrained=False,
                       metrics=[partial(accuracy_multi, thresh=0.5), F1ScoreMulti()])
learn.loss_func"""),
    ("code", "learn.lr_find(num_it=20 if FAST else 100)"),
    ("code", "learn.fit_one_cycle(3 if FAST else 10, 1e-2)"),
    ("code", "learn.show_results(max_n=6);"),
    ("md", """## Where it goes wrong, per label

A multi-label model makes one yes/no decision per label, so the confusion matrix is one 2x2 table per
label (rows: actual no/yes, columns: predicted no/yes)."""),
    ("code", """interp = ClassificationInterpretation.from_learner(learn)
interp.print_classification_report()
interp.plot_confusion_matrix();"""),
    ("md", """## Choosing the threshold

fastai's book picks the threshold by looking at `accuracy_multi` over a range of thresholds on the
validation predictions. With a small validation set the curve is flat and noisy at the top, and the
single best point is often at its edge: take the middle of the thresholds within 1% of the best instead."""),
    ("code", """preds, targs = learn.get_preds()   # sigmoid probabilities, one-hot targets
xs = [round(0.05 * i, 2) for i in range(1, 20)]
accs = [float(accuracy_multi(preds, targs, thresh=t, sigmoid=False)) for t in xs]
near = [t for t, a in zip(xs, accs) if a >= max(accs) - 0.01]  # the flat top of the curve
best = near[len(near) // 2]  # its middle, not its edge
plt.plot(xs, accs)
plt.axvline(best, color="red", ls="--")
plt.xlabel("threshold")
plt.ylabel("accuracy_multi")
print(f"threshold {best} (accuracy_multi {accs[xs.index(best)]:.3f}; {near[0]} to {near[-1]} are within 1% of the best)")"""),
    ("md", """## Export and predict

The threshold is part of the loss, and the export saves it with the weights (and the fact that the model
is multi-label), so the loaded model decides exactly as the training one did. `predict` returns the
labels, a boolean mask over the vocab and the probabilities, like fastai."""),
    ("code", """learn.loss_func = BCEWithLogitsLossFlat(thresh=best)
fname = learn.export("shapes.vtl")
predictor = load_learner(fname)
img = path/df.fname[0]
labels, mask, probs = predictor.predict(img)
print(df.fname[0], "true:", df.labels[0], "| predicted:", labels, mask.tolist())
assert labels == learn.predict(img)[0]"""),
]

NOTEBOOKS = {
    "01_cats_vs_dogs.ipynb": CATS_VS_DOGS,
    "02_your_own_images.ipynb": YOUR_OWN_IMAGES,
    "03_inference.ipynb": INFERENCE,
    "04_multi_label_and_datablock.ipynb": MULTI_LABEL,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(_nb(cells), HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
