"""The disk cache (magma_teach.data.cache) and loading through it (magma_teach.data.registry)."""

import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import os
import re
import warnings
from pathlib import Path, PurePosixPath

import numpy as np

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


def _corrupt_line(path, reason: str) -> str:
    return f"magma_teach: cache file {cache.display_path(path)} is corrupt ({reason}); rebuilding it\n"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not_a_dict"])
def test_corrupt_file_says_one_line_and_is_rebuilt(tmp_path, damage, capsys):
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
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a line on stderr, not a Python warning
        payload = cache.cached("demo", {"a": 1}, build, tmp_path)
    err = capsys.readouterr().err
    if damage == "not_a_dict":
        assert err == _corrupt_line(path, "TypeError: expected a dict, found list")
    elif damage == "empty":
        assert err == _corrupt_line(path, "EOFError: the file is empty")
    else:
        assert re.fullmatch(re.escape(_corrupt_line(path, "@")).replace("@", r"\w+: [^\n]+"), err), err
    assert len(calls) == 2 and torch.equal(payload["x"], _payload()["x"])
    cache.cached("demo", {"a": 1}, build, tmp_path)  # the rebuilt file is good: silent, no third build
    assert capsys.readouterr().err == "" and len(calls) == 2


def test_the_reason_is_cut_between_words_only(tmp_path, capsys):
    words = [f"word{i}" for i in range(60)]
    build, calls = _counting_builder()
    cache.cached("demo", {"a": 1}, build, tmp_path)
    capsys.readouterr()

    def picky(payload):
        if len(calls) == 1:  # the file built first is judged bad, with a long two-line reason
            raise ValueError(" ".join(words[:30]) + "\n" + " ".join(words[30:]))

    cache.cached("demo", {"a": 1}, build, tmp_path, validate=picky)
    err = capsys.readouterr().err
    path = cache.cache_path("demo", {"a": 1}, tmp_path)
    prefix = f"magma_teach: cache file {cache.display_path(path)} is corrupt (ValueError: "
    suffix = "); rebuilding it\n"
    assert err.startswith(prefix) and err.endswith(suffix) and err.count("\n") == 1
    quoted = err[len(prefix): -len(suffix)].split(" ")
    assert quoted[-1] == "…" and quoted[:-1] == words[: len(quoted) - 1]  # whole words, in order, then …
    assert len("ValueError: " + " ".join(quoted[:-1])) <= cache.REASON_WIDTH


@pytest.mark.parametrize("text, width, expected", [
    ("alpha beta gamma", 10, "alpha beta …"),  # "alpha beta" is exactly 10: kept
    ("alpha beta gamma", 16, "alpha beta gamma"),
    ("alpha\n  beta\tgamma", 80, "alpha beta gamma"),
    ("x" * 30 + " tail", 10, "x" * 30 + " …"),  # a first word longer than width is kept whole
    ("", 10, ""),
])
def test_one_line(text, width, expected):
    assert cache.one_line(text, width) == expected


def test_a_pickled_object_is_refused_by_weights_only_loading(tmp_path, capsys):
    path = cache.cache_path("demo", {"a": 1}, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": Path("/tmp")}, path)  # written around the cache: not loadable under weights_only
    build, calls = _counting_builder()
    cache.cached("demo", {"a": 1}, build, tmp_path)
    assert "is corrupt (UnpicklingError: Weights only load failed" in capsys.readouterr().err
    assert len(calls) == 1


def _data_files(folder):
    """Everything in ``folder`` but the lock files, which stay by design (see the cache docstring)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if ".locks" not in p.parts)


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(obj, handle):
        handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.cached("demo", {"a": 1}, _counting_builder()[0], tmp_path)
    assert _data_files(tmp_path) == []
    assert [p.name for p in (tmp_path / ".locks").iterdir()] == [f"{cache.cache_key('demo', {'a': 1})}.pt.lock"]


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


def test_load_recovers_from_a_corrupt_dataset_file(tmp_path, capsys):
    ds = registry.load("numbers", cache_dir=tmp_path, **SMALL_NUMBERS)
    (path,) = tmp_path.glob("numbers-*.pt")
    assert ds.info["cache_path"] == cache.display_path(path)
    path.write_bytes(path.read_bytes()[:1000])
    capsys.readouterr()
    again = registry.load("numbers", cache_dir=tmp_path, **SMALL_NUMBERS)
    assert re.fullmatch(r"magma_teach: cache file \S+numbers-\w+\.pt is corrupt \(.+\); rebuilding it\n",
                        capsys.readouterr().err)
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


# --- payloads: what torch.load(weights_only=True) could not read back is converted or refused -------

def test_the_reported_numpy_float_builds_once_for_three_calls(tmp_path, capsys):
    calls = []

    def build():
        calls.append(1)
        return {"std": np.float64(4.2)}

    results = [cache.cached("toy", {"a": 1}, build, tmp_path) for _ in range(3)]
    assert len(calls) == 1 and capsys.readouterr().err == ""
    assert all(type(r["std"]) is float and r["std"] == 4.2 for r in results)


class _Sub(torch.Tensor):
    pass


Point = collections.namedtuple("Point", "x y")


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Box:
    size: int


def _self_containing():
    loop = [1]
    loop.append(loop)
    return loop


# value → what every call of cached() returns in its place (the same type, the same value)
CONVERTED = {
    "np.float64": (np.float64(4.2), 4.2),
    "np.float32": (np.float32(0.5), 0.5),
    "np.int64": (np.int64(-3), -3),
    "np.uint64 big": (np.uint64(2**63), 2**63),
    "np.bool_": (np.bool_(True), True),
    "np.complex128": (np.complex128(1 + 2j), 1 + 2j),
    "np.str_": (np.str_("a"), "a"),
    "np.bytes_": (np.bytes_(b"x"), b"x"),
    "float array": (np.zeros((2, 3)), torch.zeros(2, 3, dtype=torch.float64)),
    "int32 array": (np.arange(3, dtype=np.int32), torch.arange(3, dtype=torch.int32)),
    "bool array": (np.array([True, False]), torch.tensor([True, False])),
    "0-d array": (np.array(5.0), torch.tensor(5.0, dtype=torch.float64)),
    "transposed array": (np.arange(6).reshape(2, 3).T, torch.arange(6).reshape(2, 3).T.contiguous()),
    "string array": (np.array(["a", "bc"]), ["a", "bc"]),
    "object array": (np.array([1, "a", np.float64(2.5)], dtype=object), [1, "a", 2.5]),
    "Path": (Path("a") / "b.wav", str(Path("a") / "b.wav")),
    "PurePosixPath": (PurePosixPath("x/y"), "x/y"),
    "OrderedDict": (collections.OrderedDict(a=np.int64(1)), {"a": 1}),
    "defaultdict": (collections.defaultdict(list, k=[np.int8(2)]), {"k": [2]}),
    "Counter": (collections.Counter("aab"), {"a": 2, "b": 1}),
    "frozenset": (frozenset({np.int64(1), 2}), {1, 2}),
    "set of numpy": ({np.int64(3), np.int64(4)}, {3, 4}),
    "tuple": ((np.int64(1), Path("p")), (1, "p")),
    "numpy key": ({np.int64(7): "seven"}, {7: "seven"}),
    "Path key": ({Path("k"): 1}, {"k": 1}),
    "tensor subclass": (torch.ones(2).as_subclass(_Sub), torch.ones(2)),
    "list subclass": (type("Names", (list,), {})(["a"]), ["a"]),
    "nested": ({"deep": [{"v": np.float32(1.5)}]}, {"deep": [{"v": 1.5}]}),
    "already plain": ({"t": torch.arange(3), "n": None, "s": "x", "b": b"y", "c": 1j, "size": torch.Size([2])},
                      {"t": torch.arange(3), "n": None, "s": "x", "b": b"y", "c": 1j, "size": torch.Size([2])}),
}


def _same(a, b) -> bool:
    """Equal values of exactly the same types, all the way down (tensors: same dtype and values)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("value, expected", CONVERTED.values(), ids=list(CONVERTED))
def test_convertible_values_are_saved_plain_and_built_once(tmp_path, capsys, value, expected):
    calls = []

    def build():
        calls.append(1)
        return {"info": {"v": value}}

    results = [cache.cached("toy", {"a": 1}, build, tmp_path)["info"]["v"] for _ in range(3)]
    assert len(calls) == 1 and capsys.readouterr().err == ""
    assert all(_same(r, expected) for r in results), results


# value → the place and the kind the one-line error names (V: where the value sits in the payload)
V = r"payload\['info'\]\['v'\]"
REFUSED = {
    "date": (datetime.date(2020, 1, 1), V + r" = datetime\.date\(2020, 1, 1\): a datetime\.date"),
    "np.datetime64": (np.datetime64("2020-01-01"), V + r" = .*: a numpy\.datetime64"),
    "datetime array": (np.array(["2020-01-01"], dtype="datetime64[D]"), V + r"\[0\] = .*: a datetime\.date"),
    "np.longdouble": (np.longdouble(1), V + r" = .*: a numpy\.longdouble"),
    "Decimal": (decimal.Decimal("1.5"), V + r" = .*: a decimal\.Decimal"),
    "Fraction": (fractions.Fraction(1, 2), V + r" = .*: a fractions\.Fraction"),
    "namedtuple": (Point(1, 2), V + r" = .*: a test_cache\.Point .*tuple subclass loses its type.*_asdict\(\)"),
    "enum": (Colour.RED, V + r" = .*: a test_cache\.Colour"),
    "dataclass": (Box(3), V + r" = Box\(size=3\): a test_cache\.Box"),
    "object": (object(), V + r" = .*: a builtins\.object"),
    "function": (len, V + r" = .*: a builtins\.builtin_function_or_method"),
    "slice": (slice(1, 2), V + r" = .*: a builtins\.slice"),
    "range": (range(3), V + r" = .*: a builtins\.range"),
    "Ellipsis": (..., V + r" = .*: a builtins\.ellipsis"),
    "inside a list": ([1, 2, object()], V + r"\[2\] = "),
    "inside a tuple": ((1, (2, Box(1))), V + r"\[1\]\[1\] = "),
    "a key": ({object(): 1}, V + r"\{key\} = <object"),
    "a set element": ({(1, object())}, V + r"\{element\}\[1\] = <object"),
    "unhashable once converted": ({frozenset({1})}, V + r"\{element\} = frozenset.*must stay hashable"),
    "keys that collide": ({Path("a"): 1, "a": 2}, V + r": keys .* become equal once converted"),
    "a cycle": (_self_containing(), V + r"\[1\]: it contains itself"),
}


@pytest.mark.parametrize("value, pattern", REFUSED.values(), ids=list(REFUSED))
def test_unloadable_values_are_refused_before_anything_is_written(tmp_path, value, pattern):
    with pytest.raises(ValueError, match=r"^cannot cache " + pattern) as err:
        cache.cached("toy", {"a": 1}, lambda: {"info": {"v": value}}, tmp_path)
    assert "\n" not in str(err.value)
    assert _data_files(tmp_path) == []


def test_the_error_names_the_path_of_the_issue(tmp_path):
    with pytest.raises(ValueError, match=r"^cannot cache payload\['info'\]\['std'\] = Box\(size=4\): a test_cache\.Box "
                                         r"cannot be read back by torch\.load\(weights_only=True\); store tensors"):
        cache.cached("toy", {"a": 1}, lambda: {"info": {"std": Box(4)}}, tmp_path)


def test_a_build_that_is_not_a_dict_or_fails_its_check_is_not_cached(tmp_path):
    with pytest.raises(ValueError, match=r"^build_fn of 'toy' must return a dict, got list$"):
        cache.cached("toy", {"a": 1}, lambda: [1, 2], tmp_path)

    def needs_x(payload):
        payload["x"]

    with pytest.raises(KeyError, match="x"):
        cache.cached("toy", {"a": 1}, lambda: {"y": 1}, tmp_path, validate=needs_x)
    assert _data_files(tmp_path) == []


def test_save_payload_returns_what_it_wrote(tmp_path):
    path = tmp_path / "f.pt"
    tensor = torch.arange(4)
    assert cache.save_payload(tensor, path) is tensor  # a tensor is written as it is, not copied
    plain = cache.save_payload({"n": np.int64(2), "p": Path("q")}, path)
    assert plain == {"n": 2, "p": "q"} and cache.load_payload(path) == plain


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_cache_file_follows_the_umask(tmp_path, umask, mode):
    """Written through tempfile.mkstemp (owner-only), renamed into place with the mode open() would give."""
    old = os.umask(umask)
    try:
        cache.save_payload({"n": 1}, tmp_path / "f.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "f.pt").stat().st_mode & 0o777 == mode


def test_a_shared_container_stays_shared():
    shared = [np.int64(1)]
    plain = cache.to_plain({"a": shared, "b": shared})
    assert plain["a"] is plain["b"] and plain["a"] == [1]


def test_a_good_file_is_loaded_without_the_lock(tmp_path, monkeypatch):
    build, calls = _counting_builder()
    cache.cached("demo", {"a": 1}, build, tmp_path)

    def no_lock(target):
        raise AssertionError(f"locked {target} to read a good file")

    monkeypatch.setattr(cache, "cache_lock", no_lock)  # as in a read-only shared cache
    assert cache.cached("demo", {"a": 1}, build, tmp_path)["names"] == ["a", "b"] and len(calls) == 1
