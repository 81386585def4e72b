"""Every ```python block and every shell command in README.md runs verbatim, after the README's own install.

The README is what users run first, so it is run here as a reader would: in a temporary folder, in a fresh
process, with the things a user's machine would have (their photos and folders, the Oxford-IIIT Pet set in
``untar_data``'s cache, ImageNet weights in the Hugging Face / torch hub cache) made tiny and synthetic:
the cached weights are randomly initialised but written under the exact file names the real loaders look
for, so the real loading code runs. Python blocks run in order in one process (later sections use names
from earlier ones); each shell command runs in ``bash`` in the same folder. ``tests/readme/sitecustomize.py``
is the fast mode (images at most 32 px, ``lr_find`` at most 10 steps); nothing else changes.

A command that cannot run here is listed in ``SKIPS`` with the reason; a new README section must either
run under this test or add its reason there. One test per block/command, so a failure names it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HERE = Path(__file__).resolve().parent / "readme"

# (pattern searched in a command, why it is not run here)
SKIPS = [
    (r"-m pytest", "runs this test suite, of which this test is part"),
    (r"torchrun .*--nnodes=[2-9]", "needs several machines"),
    (r"jupyter lab", "starts a server that waits for a browser (tests/test_notebooks.py runs the notebooks)"),
    (r"torchrun .*--nproc_per_node=[2-9]",
     "starts one training process per GPU (torchrun on the CPU is tested in tests/train/test_distributed.py)"),
]
# install steps: the README's premise (this test runs in the environment they made); their extras are checked
_INSTALL = re.compile(r"^\s*(python3? -m venv \S+|\S*pip install .*)\s*$")


@dataclass(frozen=True)
class Snippet:
    kind: str  # "python" or "shell"
    code: str
    line: int
    section: str

    @property
    def id(self) -> str:
        head = self.code.strip().splitlines()[0] if self.kind == "shell" else self.section
        slug = re.sub(r"[^a-z0-9]+", "-", head.lower()).strip("-")[:48]
        return f"{self.kind}-L{self.line}-{slug}"

    @property
    def script(self) -> str | None:
        m = re.match(r"#\s*([\w.-]+\.py)\s*$", self.code.splitlines()[0]) if self.kind == "python" else None
        return m.group(1) if m else None


def readme_snippets(text: str) -> list[Snippet]:
    """The README's ```python blocks and the commands (one per line, comments dropped) of its shell blocks."""
    out: list[Snippet] = []
    section, lang, start, body = "", None, 0, []
    for no, line in enumerate(text.splitlines(), 1):
        if lang is None and line.startswith("#"):
            section = line.lstrip("#").strip()
        elif lang is None and line.startswith("```"):
            lang, start, body = line[3:].strip(), no, []
        elif lang is not None and line.startswith("```"):
            if lang == "python":
                out.append(Snippet("python", "\n".join(body) + "\n", start + 1, section))
            elif lang in ("bash", "sh", "shell", "console"):
                for i, cmd in enumerate(body):
                    if cmd.strip() and not cmd.lstrip().startswith("#"):
                        out.append(Snippet("shell", cmd.strip(), start + 1 + i, section))
            lang = None
        elif lang is not None:
            body.append(line)
    return out


SNIPPETS = readme_snippets(README.read_text())


# ---------------------------------------------------------------- the user's world, tiny and synthetic
def _archs(text: str) -> set[str]:
    """Architectures the README trains with pretrained weights (their weights go into the cache)."""
    return set(re.findall(r'vision_learner\(\s*\w+,\s*"([\w.-]+)"', text)) | set(re.findall(r"--arch[ =]([\w.-]+)", text))


def _cache_weights(arch: str, hf_home: Path, torch_home: Path) -> None:
    """A randomly initialised ``arch`` saved where timm's loader would find a downloaded copy."""
    import timm
    import torch
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    sd = {k: v.contiguous() for k, v in timm.create_model(arch, pretrained=False).state_dict().items()}
    if cfg.hf_hub_id:
        repo = hf_home / "hub" / ("models--" + cfg.hf_hub_id.split("@")[0].replace("/", "--"))
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        save_file(sd, str(repo / "snapshots" / commit / "model.safetensors"))
    else:
        ckpt = torch_home / "hub" / "checkpoints"
        ckpt.mkdir(parents=True, exist_ok=True)
        torch.save(sd, ckpt / Path(cfg.url).name)


def _make_world(tmp: Path) -> tuple[Path, dict[str, str]]:
    from PIL import Image

    from vision_tl.data.synthetic import make_synthetic_pets

    home, hf_home, torch_home, work = tmp / "home", tmp / "hf", tmp / "torch", tmp / "work"
    pets = make_synthetic_pets(home / "data" / "oxford-iiit-pet", n_images=16, n_breeds=2, seed=3,
                               min_side=40, max_side=64)  # what untar_data(URLs.PETS) finds in its cache
    shutil.copytree(pets, work / "pets")  # the user's own copy for the command line
    images = sorted((pets / "images").glob("*.jpg"))
    shutil.copy(images[0], work / "photo.jpg")
    (work / "more_photos").mkdir()
    for f in images[1:3]:
        shutil.copy(f, work / "more_photos" / f.name)
    Image.open(images[3]).save(work / "snapshot.png")
    for f in images[:6]:  # holdout/<breed>/...: labelled by folder, the classes of the trained model
        breed = f.stem.rsplit("_", 1)[0]
        (work / "holdout" / breed).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, work / "holdout" / breed / f.name)
    (work / ".venv").symlink_to(sys.prefix)  # `.venv/bin/...` after the README's install
    for arch in sorted(_archs(README.read_text())):
        _cache_weights(arch, hf_home, torch_home)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),  # fast mode, then this checkout
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "VISION_TL_HOME": str(home), "HF_HOME": str(hf_home), "TORCH_HOME": str(torch_home),
        "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "NO_ALBUMENTATIONS_UPDATE": "1",
    }
    env.pop("VISION_TL_MIRROR", None)
    return work, env


def _check_install(segment: str) -> None:
    """An install step names extras that exist."""
    table = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([\w-]+)\s*=", table, re.M))
    for group in re.findall(r"\[([\w,-]+)\]", segment):
        for name in group.split(","):
            assert name in extras, f"README installs extra {name!r}, which pyproject.toml does not define"


def _run_shell(cmd: str, work: Path, env: dict[str, str]) -> tuple[str, str]:
    for pattern, reason in SKIPS:
        if re.search(pattern, cmd):
            return "skip", reason
    runnable = []
    for seg in cmd.split("&&"):
        if _INSTALL.match(seg):
            _check_install(seg)
        else:
            runnable.append(seg.strip())
    if not runnable:
        return "ok", "install step (checked, not run)"
    start = time.perf_counter()
    r = subprocess.run(["bash", "-c", " && ".join(runnable)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=600)
    took = f"{time.perf_counter() - start:.1f} s"
    return ("ok" if r.returncode == 0 else "fail"), f"exit {r.returncode} after {took}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def readme_results(tmp_path_factory) -> dict[str, tuple[str, str]]:
    work, env = _make_world(tmp_path_factory.mktemp("readme"))
    results: dict[str, tuple[str, str]] = {}
    blocks = [{"id": s.id, "code": s.code, "line": s.line, "script": s.script} for s in SNIPPETS if s.kind == "python"]
    (work.parent / "blocks.json").write_text(json.dumps(blocks))
    out = work.parent / "results.json"
    r = subprocess.run([sys.executable, str(HERE / "runner.py"), str(work.parent / "blocks.json"), str(out)],
                       cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    ran = json.loads(out.read_text()) if out.exists() else {}
    for b in blocks:
        tb = ran.get(b["id"], f"not run: the runner stopped (exit {r.returncode})\n{r.stderr[-3000:]}")
        results[b["id"]] = ("ok", "") if tb is None else ("fail", tb)
    for s in SNIPPETS:
        if s.kind == "shell":
            results[s.id] = _run_shell(s.code, work, env)
    print(r.stdout, "\n".join(f"{k}: {v[0]} {v[1].splitlines()[0] if v[1] else ''}" for k, v in results.items()))
    return results


def test_the_readme_has_blocks_and_commands():
    kinds = {s.kind for s in SNIPPETS}
    assert kinds == {"python", "shell"} and len({s.id for s in SNIPPETS}) == len(SNIPPETS)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first snippet's time includes running the whole README (the fixture)
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_readme_snippet_runs_verbatim(snippet: Snippet, readme_results):
    status, detail = readme_results[snippet.id]
    if status == "skip":
        pytest.skip(detail)
    assert status == "ok", f"README.md line {snippet.line} ({snippet.section}):\n{snippet.code}\n{detail}"
