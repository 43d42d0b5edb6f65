"""The disk cache (magma_teach.data.cache) and loading through it (magma_teach.data.registry)."""

import os
import warnings
from pathlib import Path

import pytest
import torch

from magma_teach.data import cache, registry
from magma_teach.data.base import CrossModalDataset, Modality

SMALL_NUMBERS = dict(high=24, per_concept=3)  # 15 concepts × 3 examples: well under a second


def _payload():
    return {"x": torch.arange(6.0).reshape(2, 3), "names": ["a", "b"], "meta": {"k": 1, "f": 0.5, "s": None}}


def _counting_builder():
    calls = []

    def build():
        calls.append(1)
        return _payload()

    return build, calls


def test_root_prefers_argument_then_environment_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "env"))
    assert cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache.cache_root() == tmp_path / "env"
    monkeypatch.delenv(cache.ENV_VAR)
    assert cache.cache_root() == Path.home() / ".cache" / "magma_teach"


def test_key_is_name_plus_hash_of_sorted_config():
    a = cache.cache_key("numbers", {"seed": 0, "high": 99})
    assert a == cache.cache_key("numbers", {"high": 99, "seed": 0})
    assert a.startswith("numbers-") and len(a) == len("numbers-") + 12
    assert a != cache.cache_key("numbers", {"seed": 1, "high": 99})
    assert a != cache.cache_key("languages", {"seed": 0, "high": 99})
    with pytest.raises(ValueError, match="config"):
        cache.cache_key("x", {"bad": object()})


def test_display_path_abbreviates_home(tmp_path):
    assert cache.display_path(Path.home() / ".cache" / "f.pt") == os.path.join("~", ".cache", "f.pt")
    outside = Path("/") / "definitely-not-home" / "f.pt"
    assert cache.display_path(outside) == str(outside)


def test_builds_once_then_loads(tmp_path):
    build, calls = _counting_builder()
    first = cache.cached("demo", {"a": 1}, build, tmp_path)
    second = cache.cached("demo", {"a": 1}, build, tmp_path)
    assert len(calls) == 1
    assert torch.equal(first["x"], second["x"]) and second["names"] == ["a", "b"] and second["meta"]["s"] is None
    cache.cached("demo", {"a": 2}, build, tmp_path)  # another config: another file
    assert len(calls) == 2 and len(list(tmp_path.glob("demo-*.pt"))) == 2
    assert not list(tmp_path.glob(".*tmp")), "no temporary file may be left behind"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not_a_dict"])
def test_corrupt_file_warns_once_and_is_rebuilt(tmp_path, damage):
    build, calls = _counting_builder()
    cache.cached("demo", {"a": 1}, build, tmp_path)
    path = cache.cache_path("demo", {"a": 1}, tmp_path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save([1, 2, 3], path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        payload = cache.cached("demo", {"a": 1}, build, tmp_path)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "is corrupt" in messages[0] and "regenerating" in messages[0]
    assert "\n" not in messages[0]
    assert len(calls) == 2 and torch.equal(payload["x"], _payload()["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt file is good: no second warning
        cache.cached("demo", {"a": 1}, build, tmp_path)


def test_a_pickled_object_is_refused_by_weights_only_loading(tmp_path):
    path = cache.cache_path("demo", {"a": 1}, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": Path("/tmp")}, path)  # an arbitrary class: not allowed under weights_only
    build, calls = _counting_builder()
    with pytest.warns(UserWarning, match="corrupt"):
        cache.cached("demo", {"a": 1}, build, tmp_path)
    assert len(calls) == 1


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(obj, handle):
        handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.cached("demo", {"a": 1}, _counting_builder()[0], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_dataset_round_trips_through_a_payload(tmp_path):
    n = 12
    labels = torch.arange(n) % 6
    ds = CrossModalDataset(
        "toy", [f"c{i}" for i in range(6)],
        Modality("vector", torch.randn(n, 3), torch.ones(n, dtype=torch.long), labels),
        Modality("audio", torch.randn(n, 2, 4), torch.full((n,), 4), labels.clone()),
        torch.stack([torch.arange(n)] * 2, 1), torch.tensor([0, 0, 1, 1, 2, 2]),
        {"meta_train": [0, 1], "val": [2, 3], "meta_test": [4, 5]}, [[4, 5]], {"texts": ["x"] * n})
    cache.save_payload(cache.dataset_to_payload(ds), tmp_path / "toy.pt")
    back = cache.dataset_from_payload(cache.load_payload(tmp_path / "toy.pt"))
    assert back.class_names == ds.class_names and back.splits == ds.splits and back.info == ds.info
    for a, b in [(back.source.x, ds.source.x), (back.target.x, ds.target.x), (back.pairs, ds.pairs),
                 (back.clusters, ds.clusters), (back.target.lengths, ds.target.lengths)]:
        assert torch.equal(a, b)


def test_load_recovers_from_a_corrupt_dataset_file(tmp_path):
    ds = registry.load("numbers", cache_dir=tmp_path, **SMALL_NUMBERS)
    (path,) = tmp_path.glob("numbers-*.pt")
    assert ds.info["cache_path"] == cache.display_path(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="corrupt.*regenerating"):
        again = registry.load("numbers", cache_dir=tmp_path, **SMALL_NUMBERS)
    assert torch.equal(again.target.x, ds.target.x) and torch.equal(again.source.x, ds.source.x)


def test_load_uses_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path))
    registry.load("numbers", **SMALL_NUMBERS)
    assert len(list(tmp_path.glob("numbers-*.pt"))) == 1


def test_unknown_benchmark_lists_the_choices():
    with pytest.raises(ValueError, match="numbers, languages"):
        registry.load("cifar")


def test_unknown_setting_and_preset_are_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown setting"):
        registry.load("numbers", cache_dir=tmp_path, colour="red")
    with pytest.raises(ValueError, match="preset"):
        registry.load("numbers", preset="huge", cache_dir=tmp_path)
