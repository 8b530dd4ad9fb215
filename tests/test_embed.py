"""mltk embed and image queries of mltk index: vectors of a real trained run (small_cnn, 32 px,
trained by the installed ``mltk train``) over real digit photos.

The vectors must be what the model itself gives (Classifier.embed_batch), L2-normalised, in the
documented vectors folder; a PCA is saved and applied again to queries; a photo finds itself; a
bad image is an error row and the rest go on; another model's index refuses image queries.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mltk.similar import read_vectors

pytestmark = pytest.mark.slow  # trains a run (once per session) and embeds hundreds of photos


def run_json(cli, *args, input=None):
    result = cli(*args, "-f", "json", input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def photos(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.jpg"))


@pytest.fixture(scope="module")
def embedded(digits_run, digits_dir, tmp_path_factory):
    """All 300 digit photos embedded with the run: (vectors folder, summary record)."""
    from typer.testing import CliRunner

    from mltk.cli import app

    out = tmp_path_factory.mktemp("embed") / "vectors"
    result = CliRunner().invoke(app, ["embed", str(digits_run), str(digits_dir), "-r",
                                      "--out", str(out), "-f", "json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)[0]


def test_embed_writes_normalised_vectors_in_the_documented_format(embedded, digits_run,
                                                                  digits_dir):
    from mltk.classify import Classifier
    from mltk.similar.embed import model_identity

    out, summary = embedded
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "ids.parquet",
                                                     "vectors.npy"]
    x = np.load(out / "vectors.npy")
    ids = pd.read_parquet(out / "ids.parquet")["id"].tolist()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert x.dtype == np.float32 and x.shape == (300, summary["dim"]) and summary["dim"] > 1
    assert ids == [str(p) for p in photos(digits_dir)]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    identity = model_identity(Classifier.load(digits_run, need_tf=False))
    assert config["model"] == str(Path(digits_run).resolve())
    assert config["identity"] == identity and len(identity) == 16
    assert config["count"] == 300 and config["normalized"] is True and config["pca"] is None
    assert {k: summary[k] for k in ("images", "embedded", "failed", "pca")} == {
        "images": 300, "embedded": 300, "failed": 0, "pca": False}
    assert read_vectors(out).identity == identity


def test_a_photo_embeds_to_what_the_model_itself_gives(embedded, digits_run, digits_dir):
    from mltk.classify import Classifier

    out, _ = embedded
    classifier = Classifier.load(digits_run, need_tf=False)
    paths = photos(digits_dir)
    picked = [paths[0], paths[150], paths[299]]
    direct = classifier.embed_batch([classifier.preprocess(p.read_bytes()) for p in picked])
    direct /= np.linalg.norm(direct, axis=1, keepdims=True)
    x = np.load(out / "vectors.npy")
    np.testing.assert_allclose(x[[0, 150, 299]], direct, atol=1e-5)


def test_dim_saves_a_pca_that_queries_are_projected_with(cli, digits_run, digits_dir,
                                                         tmp_path):
    folder = sorted(p for p in digits_dir.iterdir() if p.is_dir())[0]
    summary = run_json(cli, "embed", digits_run, folder, "--dim", "16", "--out",
                       tmp_path / "v")[0]
    assert summary["dim"] == 16 and summary["pca"] is True and summary["input_dim"] > 16
    config = yaml.safe_load((tmp_path / "v" / "config.yaml").read_text())
    assert config["pca"]["dim"] == 16 and config["pca"]["input_dim"] == summary["input_dim"]
    with np.load(tmp_path / "v" / "pca.npz") as pca:
        assert pca["components"].shape == (16, summary["input_dim"])
    x = np.load(tmp_path / "v" / "vectors.npy")
    assert x.shape == (len(photos(folder)), 16)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)

    assert cli("index", "build", tmp_path / "v", "--out", tmp_path / "idx").exit_code == 0
    photo = str(photos(folder)[3])
    record = run_json(cli, "index", "query", tmp_path / "idx", photo, "-k", "3")[0]
    assert record["query"] == photo
    assert record["neighbors"][0]["id"] == photo
    assert record["neighbors"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_index_built_from_images_finds_each_photo_itself(cli, digits_run, digits_dir,
                                                         tmp_path):
    result = cli("index", "build", digits_dir, "-r", "--model", digits_run, "--out",
                 tmp_path / "idx", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["count"] == 300
    info = run_json(cli, "index", "info", tmp_path / "idx")[0]
    assert info["model"] == str(Path(digits_run).resolve())
    asked = [str(p) for p in photos(digits_dir)[::60]]
    records = run_json(cli, "index", "query", tmp_path / "idx", *asked, "-k", "5")
    assert [r["query"] for r in records] == asked
    for rec in records:
        top = rec["neighbors"][0]["score"]
        assert top == pytest.approx(1.0, abs=1e-4)
        # the photo itself is first (an identical scan elsewhere could only tie it)
        tied = [n["id"] for n in rec["neighbors"] if n["score"] >= top - 1e-5]
        assert rec["query"] in tied


def test_a_bad_image_is_an_error_row_and_the_rest_go_on(cli, digits_run, digits_dir,
                                                        tmp_path):
    good = photos(digits_dir)[:5]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in good:
        shutil.copy(p, folder / p.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    listed = "\n".join(str(p) for p in sorted(folder.iterdir())) + "\n"
    result = cli("embed", digits_run, "-", "--out", tmp_path / "v", "-f", "json", input=listed)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)[0]
    assert (summary["images"], summary["embedded"], summary["failed"]) == (6, 5, 1)
    assert "broken.jpg" in result.stderr
    ids = pd.read_parquet(tmp_path / "v" / "ids.parquet")["id"].tolist()
    assert len(ids) == 5 and not any(i.endswith("broken.jpg") for i in ids)
    strict = cli("embed", digits_run, folder, "--out", tmp_path / "v2", "--strict")
    assert strict.exit_code == 1 and "1 of 6 images failed" in strict.stderr


def test_image_queries_of_another_models_vectors_are_refused_naming_both(
        cli, embedded, digits_run, digits_dir, tmp_path):
    out, _ = embedded
    assert cli("index", "build", out, "--out", tmp_path / "idx").exit_code == 0
    other = tmp_path / "other-run"
    shutil.copytree(digits_run, other)
    labels = (other / "labels.txt").read_text().splitlines()
    (other / "labels.txt").write_text("\n".join(f"x{lab}" for lab in labels) + "\n")
    photo = str(photos(digits_dir)[0])
    result = cli("index", "query", tmp_path / "idx", photo, "--model", other)
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("Error: model ") and str(other.resolve()) in message
    assert str(Path(digits_run).resolve()) in message and message.count("identity") == 2
    assert "Traceback" not in result.output

    # vectors of the other model, indexed, then the run retrained in place: refused too
    run_json(cli, "embed", other, digits_dir, "-r", "--out", tmp_path / "ov")
    assert cli("index", "build", tmp_path / "ov", "--out", tmp_path / "oidx").exit_code == 0
    (other / "labels.txt").write_text("\n".join(labels) + "\n")
    again = cli("index", "query", tmp_path / "oidx", photo)
    assert again.exit_code == 1 and str(other.resolve()) in again.stderr
    assert "is not the one the index's vectors were made with" in again.stderr


def test_usage_mistakes_say_what_to_give(cli, embedded, digits_run, digits_dir, tmp_path):
    out, _ = embedded
    whiten = cli("embed", digits_run, "x.jpg", "--whiten", "--out", tmp_path / "v")
    assert whiten.exit_code == 2 and "--whiten needs --dim" in whiten.output
    vectors = cli("index", "build", out, "--model", digits_run, "--out", tmp_path / "i")
    assert vectors.exit_code == 1
    assert "--model embeds images; give image files or folders" in vectors.stderr
    folder = sorted(p for p in digits_dir.iterdir() if p.is_dir())[0]
    too_wide = cli("embed", digits_run, folder, "--dim", "100000", "--out", tmp_path / "w")
    assert too_wide.exit_code == 1
    assert too_wide.stderr.strip().startswith("Error: --dim 100000: the model gives ")
    assert not (tmp_path / "w").exists()
    nothing = cli("embed", digits_run, tmp_path / "i", "--out", tmp_path / "n")
    assert nothing.exit_code == 1 and "no image could be embedded" in nothing.stderr
