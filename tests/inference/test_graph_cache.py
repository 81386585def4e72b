"""The per-user ONNX graph cache: where it lives, atomic writes, pruning by size, an unwritable cache."""

from __future__ import annotations

import os

import pytest

from vision_tl.inference import graph_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(graph_cache.ENV_DIR, str(tmp_path / "c"))
    monkeypatch.delenv(graph_cache.ENV_MAX_MB, raising=False)
    return tmp_path / "c" / "onnx"


def test_the_cache_folder_is_the_env_var_or_the_platform_user_cache(tmp_path, monkeypatch):
    from platformdirs import user_cache_dir

    monkeypatch.setenv(graph_cache.ENV_DIR, str(tmp_path / "mine"))
    assert graph_cache.cache_dir() == tmp_path / "mine" / "onnx"
    monkeypatch.delenv(graph_cache.ENV_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert graph_cache.cache_dir() == type(tmp_path)(user_cache_dir("vision_tl", appauthor=False)) / "onnx"
    assert not (tmp_path / "xdg").exists()  # asking creates nothing


def test_put_then_get_by_content_hash(cache):
    assert graph_cache.get("ab" * 32) is None
    assert graph_cache.put("ab" * 32, b"graph")
    hit = graph_cache.get("ab" * 32)
    assert hit == cache / f"{'ab' * 32}.fp32.onnx" and hit.read_bytes() == b"graph"
    assert graph_cache.get("ab" * 32, tag="int8") is None
    assert [p.name for p in cache.iterdir()] == [hit.name]  # no temporary left


def test_a_failed_write_leaves_no_partial_file(cache, monkeypatch):
    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(graph_cache.os, "replace", crash)
    assert graph_cache.put("cd" * 32, b"x" * 1000) is False
    assert list(cache.iterdir()) == []


def test_an_unwritable_cache_says_so_instead_of_raising(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(graph_cache.ENV_DIR, str(tmp_path / "file" / "c"))
    assert graph_cache.put("ef" * 32, b"graph") is False
    assert graph_cache.get("ef" * 32) is None


def test_the_least_recently_used_graphs_go_when_the_cache_is_over_its_size(cache, monkeypatch):
    monkeypatch.setenv(graph_cache.ENV_MAX_MB, str(2500 / 2**20))  # room for two 1000-byte graphs
    for i, key in enumerate(["a1", "b2", "c3"]):
        assert graph_cache.put(key * 32, bytes(1000))
        os.utime(graph_cache.entry_path(key * 32), (1000 + i, 1000 + i))
    assert sorted(p.name[:2] for p in cache.iterdir()) == ["b2", "c3"]  # a1 (oldest) pruned when c3 came
    graph_cache.get("b2" * 32)  # a hit makes b2 the most recently used
    assert graph_cache.put("d4" * 32, bytes(1000))
    assert sorted(p.name[:2] for p in cache.iterdir()) == ["b2", "d4"]
    assert graph_cache.prune(limit=0, keep=graph_cache.entry_path("d4" * 32)) == [graph_cache.entry_path("b2" * 32)]


def test_a_bad_size_limit_is_refused_naming_the_value(cache, monkeypatch):
    monkeypatch.setenv(graph_cache.ENV_MAX_MB, "lots")
    with pytest.raises(ValueError, match="VISION_TL_CACHE_MAX_MB must be a number of MiB, got 'lots'"):
        graph_cache.max_bytes()
