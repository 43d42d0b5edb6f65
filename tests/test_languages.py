"""The *languages* benchmark: sentence text → the same sentence spoken in its language."""

import re

import pytest
import torch
import wordfreq

from magma_teach.data import languages, registry
from magma_teach.data.audio import log_mel
from magma_teach.data.base import SPLITS, char_ids
from magma_teach.data.episodes import sample_alignment_task, sample_classification_task, stack_tasks
from magma_teach.data.speech import available_voices

# 15 languages from several families and scripts, 3 sentences each: about a second to generate.
CODES = ["ar", "de", "el", "en", "es", "fi", "fr", "hi", "ja", "ko", "ru", "sh", "sv", "tr", "zh"]
SMALL = dict(languages=CODES, per_language=3, top_n=300)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return registry.load("languages", cache_dir=tmp_path_factory.mktemp("cache"), **SMALL)


def test_language_table_matches_wordfreq_and_espeak():
    assert set(wordfreq.available_languages()) - set(languages.LANGUAGES) == {"fil"}  # no Tagalog voice
    voices = set(available_voices())
    assert all(voice in voices for _, voice, _ in languages.LANGUAGES.values())
    assert languages.LANGUAGES["zh"][1] == "cmn" and languages.LANGUAGES["sh"][1] == "hr"
    assert len(languages.LANGUAGES) == 41


def test_shapes_labels_and_pairs(small):
    n = 15 * 3
    assert small.class_names == sorted(CODES) and small.num_classes == 15
    assert small.source.kind == "text" and small.source.x.shape == (n, 96) and small.source.x.dtype == torch.int64
    assert small.target.kind == "audio" and small.target.x.shape == (n, 40, 300)
    assert torch.equal(small.source.labels[small.pairs[:, 0]], small.target.labels[small.pairs[:, 1]])
    assert small.clusters.shape == (15,) and len(small.info["cluster_names"]) == int(small.clusters.max()) + 1
    family = dict(zip(small.class_names, small.clusters.tolist()))
    assert family["de"] == family["en"] == family["sv"] and family["es"] == family["fr"]
    assert family["de"] != family["fr"]


def test_text_of_each_pair_is_the_spoken_sentence(small):
    info = small.info
    for i, j in small.pairs.tolist():
        text = info["texts"][j]
        ids, length = char_ids(text, 96)
        assert small.source.x[i].tolist() == ids and int(small.source.lengths[i]) == length == len(text)
        record = info["utterances"][j]
        code = small.class_names[int(small.target.labels[j])]
        assert record["text"] == text and record["voice"] == languages.LANGUAGES[code][1]


def test_speech_replays_from_the_stored_record(small):
    info = small.info
    for j in (0, 17, 44):
        wave, rate = languages.speak_target(small, j)
        feat = (log_mel(wave, rate, info["n_mels"]) - info["audio_mean"]) / info["audio_std"]
        n = int(small.target.lengths[j])
        assert n == min(feat.shape[1], info["max_frames"])
        torch.testing.assert_close(feat[:, :n], small.target.x[j, :, :n], atol=1e-4, rtol=1e-4)


def test_sentences_are_frequent_words_of_their_language(small):
    cfg = small.info["config"]
    for j, text in enumerate(small.info["texts"]):
        code = small.class_names[int(small.target.labels[j])]
        words = text.split(" ")
        assert 1 <= len(words) <= 12 and len(text) <= 96
        if len(words) < 4:  # shorter only when longer would not fit in max_chars
            assert len(text) > 96 - 40
        vocab = set(languages._vocabulary(code, cfg["top_n"]))
        assert set(words) <= vocab
        if code == "ja":
            assert re.fullmatch(r"[\u3041-\u309f\u30a0-\u30ff ]+", text), text  # kana only


def test_same_seed_same_arrays(small, tmp_path):
    again = registry.load("languages", cache_dir=tmp_path, **SMALL)
    assert torch.equal(small.source.x, again.source.x) and torch.equal(small.target.x, again.target.x)
    assert small.info["texts"] == again.info["texts"] and small.splits == again.splits
    other = registry.load("languages", seed=3, cache_dir=tmp_path, **SMALL)
    assert small.info["texts"] != other.info["texts"]


def test_splits_and_eval_tasks(small):
    assert sorted(c for s in SPLITS for c in small.splits[s]) == list(range(15))
    assert len(small.eval_tasks) >= 8
    assert all(len(t) == 5 and set(t) <= set(small.splits["meta_test"]) for t in small.eval_tasks)


@pytest.mark.parametrize("overrides, field", [
    (dict(languages=["en", "xx"] + CODES[2:]), "languages"), (dict(languages="en"), "languages"),
    (dict(languages=CODES[:10]), "languages"), (dict(languages=CODES + ["fil"]), "languages"),
    (dict(snr_db=-1.0), "snr_db"), (dict(words=[5, 2]), "words"), (dict(max_chars=0), "max_chars"),
    (dict(n_mels=128), "n_mels")])
def test_bad_settings_name_the_field(overrides, field, tmp_path):
    with pytest.raises(ValueError, match=field):
        registry.load("languages", cache_dir=tmp_path, **{**SMALL, **overrides})


def test_episode_samplers_work_on_languages(small):
    gen = torch.Generator().manual_seed(1)
    train = small.splits["meta_train"]
    for modality in (small.source, small.target):
        batch = stack_tasks([sample_classification_task(modality, train, 5, 1, 2, gen) for _ in range(3)])
        assert batch.support[0].shape[:2] == (3, 5) and batch.query_y.shape == (3, 10)
    strong = sample_alignment_task(small, train, 5, 2, gen)
    assert strong.source[0].shape == (10, 96) and strong.target[0].shape == (10, 40, 300)
    n_clusters = len(torch.unique(small.clusters[train]))
    weak = sample_alignment_task(small, train, min(3, n_clusters), 2, gen, weak=True)
    assert weak.source[0].shape[0] == weak.target[0].shape[0] == 2 * min(3, n_clusters)


def test_info_lines(small):
    lines = registry.info_lines(small)
    assert "15 classes" in lines
    assert any("sample rate: 22050 Hz" in line for line in lines)
    assert any(line.startswith("target: audio x (45, 40, 300)") for line in lines)
