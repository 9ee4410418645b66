"""Images on disk to features: real faces from att_faces and glint-sample, failures reported."""
import numpy as np
import pytest

from pipeline.recognition.embedders import OnnxEmbedder
from pipeline.recognition.extraction import extract_features, list_images
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def embedder():
    return OnnxEmbedder()


def test_list_images_labels_by_folder():
    root = shared_path("att_faces")
    paths, labels = list_images(root)
    assert len(paths) == 400
    assert len(set(labels)) == 40
    assert all(p.parent.name == lab for p, lab in zip(paths, labels))


def test_extract_reports_failures_and_keeps_the_rest(tmp_path, embedder):
    att = shared_path("att_faces")
    good = sorted((att / "s1").glob("*.pgm"))[:3]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((120, 100, 3), 127, np.uint8))
    paths = [good[0], bad, good[1], blank, good[2]]
    seen = []
    res = extract_features(paths, embedder, labels=list("abcde"), progress=lambda i, n: seen.append((i, n)))
    assert [f for f, _ in res.failed] == [str(bad), str(blank)]
    assert "no face" in res.failed[1][1]
    assert res.features.labels.tolist() == ["a", "c", "e"]
    assert seen[-1] == (5, 5)


def test_same_identity_is_closer_than_different(embedder):
    """SFace on aligned real faces: a wrong colour order or alignment would break this margin."""
    att = shared_path("att_faces")
    paths, labels = list_images(att)
    pick = [i for i, p in enumerate(paths) if p.parent.name in {"s1", "s2", "s3", "s4"}]
    res = extract_features([paths[i] for i in pick], embedder, labels=[labels[i] for i in pick])
    fs = res.features
    assert len(fs) == 40 and not res.failed
    sims = fs.embeddings @ fs.embeddings.T
    same = fs.labels[:, None] == fs.labels[None, :]
    off = ~np.eye(len(fs), dtype=bool)
    assert sims[same & off].mean() - sims[~same].mean() > 0.3
    # nearest neighbour of every face is a face of the same person
    np.fill_diagonal(sims, -1)
    assert (fs.labels[sims.argmax(1)] == fs.labels).mean() >= 0.95


def test_aligned_crops_skip_detection(embedder):
    glint = shared_path("glint-sample")
    paths, labels = list_images(glint)
    assert len(paths) == 1402 and len(set(labels)) == 24
    res = extract_features(paths[:5], embedder, labels=labels[:5], aligned=True)
    assert len(res.features) == 5 and res.features.dim == 128
