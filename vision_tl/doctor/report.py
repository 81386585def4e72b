"""The doctor's findings: a terminal summary, the JSON report, a self-contained HTML page (pictures
inline, no network) sorted by what to look at first, and a ``decisions.csv`` draft for a person to edit."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..files import replacing

__all__ = ["DoctorReport"]


class DoctorReport:
    """What :func:`vision_tl.doctor` found. ``data`` is the JSON report (a dict); ``thumbs`` maps each
    readable path to its small picture."""

    def __init__(self, data: dict[str, Any], thumbs: dict[str, np.ndarray] | None = None):
        self.data, self.thumbs = data, thumbs or {}

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def leaks(self) -> list[dict]:
        return [g for g in self.data["duplicates"] if g["leak"]]

    @property
    def conflicts(self) -> list[dict]:
        return [g for g in self.data["duplicates"] if g["conflict"]]

    def summary(self) -> str:
        """A few lines for the terminal: one count per check."""
        d = self.data
        kinds = [g["kind"] for g in d["duplicates"]]
        classes = d["classes"]
        lines = [
            f"{d['files']} files, {len(classes)} classes ({d['split']['train']} train / {d['split']['valid']} valid)",
            f"  unreadable:        {len(d['unreadable'])}",
            f"  exact duplicates:  {kinds.count('exact')} groups",
            f"  near duplicates:   {kinds.count('near')} groups",
            f"  train/valid leaks: {len(self.leaks)} groups",
            f"  label conflicts:   {len(self.conflicts)} groups",
            f"  suspect labels:    {len(d['label_issues']) if d.get('labels_checked', True) else 'not checked'}",
            f"  odd images:        {len(d['odd'])}",
        ]
        if classes:
            lo, hi = min(classes, key=classes.get), max(classes, key=classes.get)
            lines.append(f"  class balance:     {hi!r} {classes[hi]} .. {lo!r} {classes[lo]} "
                         f"(imbalance ratio {d['imbalance_ratio']})")
        lines += [f"  note: {n}" for n in d["notes"]]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def save_json(self, path: str | Path) -> Path:
        """Write the JSON report atomically."""
        with replacing(path) as tmp:
            tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False), encoding="utf-8")
        return Path(path)

    def save_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML report atomically."""
        with replacing(path) as tmp:
            tmp.write_text(self.to_html(), encoding="utf-8")
        return Path(path)

    def save_decisions(self, path: str | Path) -> Path:
        """Write a ``decisions.csv`` draft (``path,action,why``) for a person to edit, then ``--apply``."""
        from .decisions import draft_rows, write_decisions

        return write_decisions(path, draft_rows(self.data))

    # ------------------------------------------------------------ HTML
    def _img(self, path: str) -> str:
        arr = self.thumbs.get(path)
        if arr is None:
            return '<div class="none">unreadable</div>'
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="">'

    def _card(self, path: str, caption: str) -> str:
        return (f'<figure>{self._img(path)}<figcaption><code>{html.escape(path)}</code><br>'
                f'{html.escape(caption)}</figcaption></figure>')

    def _groups(self, groups: list[dict]) -> str:
        out = []
        for g in groups:
            flags = ", ".join(f for f in ("leak" if g["leak"] else "", "conflict" if g["conflict"] else "") if f)
            out.append(f'<div class="group"><b>{g["kind"]}</b> {html.escape(flags)}<div class="row">'
                       + "".join(self._card(p, f"label {lab}") for p, lab in zip(g["paths"], g["labels"]))
                       + "</div></div>")
        return "".join(out)

    def to_html(self) -> str:
        """The report as one HTML page, the most urgent findings first."""
        d = self.data
        dup = d["duplicates"]
        sections = [
            ("Unreadable files", len(d["unreadable"]),
             "".join(self._card(r["path"], r["reason"]) for r in d["unreadable"])),
            ("Train/valid leaks", len(self.leaks), self._groups(self.leaks)),
            ("Label conflicts (copies with different labels)", len(self.conflicts),
             self._groups([g for g in self.conflicts if not g["leak"]])),
            ("Suspect labels (most suspect first)", len(d["label_issues"]),
             "".join(self._card(r["path"], f"given {r['given']}, suggested {r['suggested']}, score {r['score']:.3f}")
                     for r in d["label_issues"])),
            ("Exact duplicates", sum(g["kind"] == "exact" for g in dup),
             self._groups([g for g in dup if g["kind"] == "exact" and not (g["leak"] or g["conflict"])])),
            ("Near duplicates", sum(g["kind"] == "near" for g in dup),
             self._groups([g for g in dup if g["kind"] == "near" and not (g["leak"] or g["conflict"])])),
            ("Odd images", len(d["odd"]), "".join(self._card(r["path"], r["reason"]) for r in d["odd"])),
        ]
        top = max(d["classes"].values(), default=1)
        balance = "".join(f'<tr><td>{html.escape(str(c))}</td><td>{n}</td><td><div class="bar" '
                          f'style="width:{200 * n / top:.0f}px"></div></td></tr>' for c, n in d["classes"].items())
        body = "".join(f'<section><h2>{html.escape(t)}: {n}</h2><div class="row">{inner}</div></section>'
                       for t, n, inner in sections if n)
        return f"""<!doctype html><html><head><meta charset="utf-8"><title>vision-tl doctor</title><style>
body{{font-family:sans-serif;margin:1em}} .row{{display:flex;flex-wrap:wrap;gap:8px}}
figure{{margin:0;width:140px;font-size:11px;word-break:break-all}} img{{width:128px;height:128px;image-rendering:pixelated}}
.group{{border:1px solid #ccc;padding:4px;margin:4px}} .bar{{background:#4a7;height:10px}}
.none{{width:128px;height:128px;background:#eee;display:flex;align-items:center;justify-content:center}}
</style></head><body><h1>vision-tl doctor: {html.escape(d['root'])}</h1><pre>{html.escape(self.summary())}</pre>
{body}<section><h2>Class balance (imbalance ratio {d['imbalance_ratio']})</h2><table>{balance}</table></section>
</body></html>"""
