"""The feature file form: checked on the way in, round-tripped exactly, written atomically."""
import numpy as np
import pytest

from pipeline.features import (
    FeatureFileError,
    FeatureSet,
    check_embeddings,
    l2_normalize,
    load_features,
    load_labels,
    save_features,
    save_labels,
)


def _set(n=5, d=4, labels=True):
    rng = np.random.default_rng(0)
    emb = l2_normalize(rng.normal(size=(n, d)))
    return FeatureSet(
        embeddings=emb,
        paths=[f"/x/{i}.jpg" for i in range(n)],
        labels=[f"id{i % 2}" for i in range(n)] if labels else None,
        extra={"max_logit": np.arange(n, dtype=np.float32)},
    )


def test_round_trip(tmp_path):
    fs = _set()
    path = save_features(tmp_path / "f.npz", fs)
    back = load_features(path)
    np.testing.assert_array_equal(back.embeddings, fs.embeddings)
    assert back.paths.tolist() == fs.paths.tolist()
    assert back.labels.tolist() == fs.labels.tolist()
    np.testing.assert_array_equal(back.extra["max_logit"], fs.extra["max_logit"])
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]  # no temporary left behind


def test_unlabeled_round_trip(tmp_path):
    back = load_features(save_features(tmp_path / "u.npz", _set(labels=False)))
    assert back.labels is None


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((3, 4), np.float32), "L2-normalised"),
        (np.zeros((0, 4), np.float32), "non-empty"),
        (np.ones(4, np.float32), "non-empty"),
        (np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.ones((2, 2), np.int64), "floating"),
    ],
)
def test_bad_embeddings_are_refused(bad, message):
    with pytest.raises(FeatureFileError, match=message):
        check_embeddings(bad)


def test_misaligned_arrays_are_refused():
    fs = _set()
    with pytest.raises(FeatureFileError, match="paths"):
        FeatureSet(embeddings=fs.embeddings, paths=fs.paths[:3])
    with pytest.raises(FeatureFileError, match="labels"):
        FeatureSet(embeddings=fs.embeddings, paths=fs.paths, labels=fs.labels[:2])
    with pytest.raises(FeatureFileError, match="rows"):
        FeatureSet(embeddings=fs.embeddings, paths=fs.paths, extra={"x": np.zeros(2)})


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FeatureFileError, match="no feature file"):
        load_features(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(FeatureFileError, match="not a readable"):
        load_features(tmp_path / "bad.npz")
    np.savez(tmp_path / "nopaths.npz", embeddings=_set().embeddings)
    with pytest.raises(FeatureFileError, match="'paths'"):
        load_features(tmp_path / "nopaths.npz")


def test_label_ids_and_subset():
    fs = _set(n=6)
    ids, names = fs.label_ids()
    assert names.tolist() == ["id0", "id1"]
    assert ids.tolist() == [0, 1, 0, 1, 0, 1]
    sub = fs.subset(np.array([1, 3]))
    assert len(sub) == 2 and sub.labels.tolist() == ["id1", "id1"]
    assert sub.extra["max_logit"].tolist() == [1.0, 3.0]


def test_cluster_labels_file(tmp_path):
    path = save_labels(tmp_path / "l.npz", np.array([0, 0, 1], dtype=np.int32))
    got = load_labels(path)
    assert got.dtype == np.int64 and got.tolist() == [0, 0, 1]
    with pytest.raises(FeatureFileError):
        save_labels(tmp_path / "x.npz", np.array([0.5, 1.0]))


def test_atomic_path_keeps_the_old_file_when_a_write_fails(tmp_path):
    from pipeline.features import atomic_path

    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1
