"""mltk.storage: models from archives and object stores, unpacked safely, served by URL.

Hostile archives are built here byte by byte; the S3 tests run moto's S3 API server as a real
process on a loopback port (never the network) and compare ``mltk serve s3://...`` with
``mltk xgb-predict`` on the same rows.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from mltk.errors import InputError
from mltk.storage import StorageSettings, UnsafeArchive, localize, model_name, unpack
from tests.conftest import free_port

LIMITS = {"max_bytes": 10 * 2**20, "max_files": 100}


def _tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _model_folder(root: Path) -> Path:
    folder = root / "churn"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.yaml").write_text("kind: two-group\n")
    (folder / "sub" / "weights.bin").write_bytes(os.urandom(1000))
    return folder


def test_a_model_archive_unpacks_to_its_folder(tmp_path):
    folder = _model_folder(tmp_path)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="churn")
    settings = StorageSettings(cache_dir=str(tmp_path / "cache"))
    local = Path(localize(archive, settings))
    assert local.name == "churn" and (local / "config.yaml").read_text() == "kind: two-group\n"
    assert (local / "sub" / "weights.bin").read_bytes() == \
        (folder / "sub" / "weights.bin").read_bytes()
    assert localize(archive, settings) == str(local)  # cached: the same folder
    # SageMaker's /opt/ml/model after a training job: a folder holding only model.tar.gz
    sm = tmp_path / "opt-ml-model"
    sm.mkdir()
    shutil.copy(archive, sm / "model.tar.gz")
    assert (Path(localize(sm, settings)) / "config.yaml").is_file()
    assert localize(folder, settings) == str(folder)  # a model folder is used as it is


def test_zip_archives_unpack_too(tmp_path):
    folder = _model_folder(tmp_path)
    archive = tmp_path / "churn.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in folder.rglob("*"):
            zf.write(p, p.relative_to(folder))
    local = Path(localize(archive, StorageSettings(cache_dir=str(tmp_path / "cache"))))
    assert (local / "config.yaml").is_file() and (local / "sub" / "weights.bin").is_file()


@pytest.mark.parametrize("entries, words", [
    ([(_file("../evil.txt"), b"x")], "'..'"),
    ([(_file("ok/../../evil.txt"), b"x")], "'..'"),
    ([(_file("/tmp/evil.txt"), b"x")], "absolute path"),
    ([(_link("config.yaml", "/etc/passwd"), None)], "outside the folder"),
    ([(_link("a/b", "../../etc"), None)], "outside the folder"),
    ([(_link("hard", "../outside", tarfile.LNKTYPE), None)], "'..'"),
    ([(_link("fifo", "", tarfile.FIFOTYPE), None)], "device or FIFO"),
    ([(_link("dev", "", tarfile.CHRTYPE), None)], "device or FIFO"),
])
def test_hostile_tar_entries_are_refused(tmp_path, entries, words):
    archive = _tar(tmp_path / "bad.tar.gz", [(_file("config.yaml"), b"kind: x\n"), *entries])
    dest = tmp_path / "out" / "model"
    with pytest.raises(UnsafeArchive, match=words) as err:
        unpack(archive, dest, **LIMITS)
    assert str(archive) in str(err.value)
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []  # nothing kept
    assert not (tmp_path / "evil.txt").exists()


def test_a_link_inside_the_folder_is_kept(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [(_file("config.yaml"), b"kind: x\n"),
                                            (_link("alias.yaml", "config.yaml"), None)])
    dest = unpack(archive, tmp_path / "model", **LIMITS)
    assert (dest / "alias.yaml").read_text() == "kind: x\n"


def test_archive_bombs_stop_at_the_limit(tmp_path):
    zeros = b"\0" * (12 * 2**20)  # 12 MB of zeros: a few KB compressed, over the 10 MB limit
    tar = _tar(tmp_path / "bomb.tar.gz", [(_file("config.yaml"), b"x"), (_file("big"), zeros)])
    assert tar.stat().st_size < 100_000
    with pytest.raises(UnsafeArchive, match="archive bomb"):
        unpack(tar, tmp_path / "t", **LIMITS)
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.yaml", "x")
        zf.writestr("big", zeros)
    with pytest.raises(UnsafeArchive, match="archive bomb"):
        unpack(zpath, tmp_path / "z", **LIMITS)
    many = _tar(tmp_path / "many.tar.gz", [(_file(f"f{i}"), b"") for i in range(101)])
    with pytest.raises(UnsafeArchive, match="more than 100 entries"):
        unpack(many, tmp_path / "m", **LIMITS)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bomb.tar.gz", "bomb.zip", "many.tar.gz"]


def test_hostile_zip_entries_are_refused(tmp_path):
    for name, words in [("../evil.txt", "'..'"), ("/abs.txt", "absolute path")]:
        zpath = tmp_path / "bad.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            zf.writestr("config.yaml", "x")
            zf.writestr(zipfile.ZipInfo(name), "evil")
        with pytest.raises(UnsafeArchive, match=words):
            unpack(zpath, tmp_path / "out", **LIMITS)
        assert not (tmp_path / "out").exists()
    zpath = tmp_path / "link.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        info = zipfile.ZipInfo("config.yaml")
        info.external_attr = (0o120777 << 16)  # a symlink whose content is its target
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match="outside the folder"):
        unpack(zpath, tmp_path / "out", **LIMITS)


def test_damaged_archives_and_non_models_are_named(tmp_path):
    bad = tmp_path / "cut.tar.gz"
    folder = _model_folder(tmp_path)
    with tarfile.open(bad, "w:gz") as tf:
        tf.add(folder, arcname=".")
    bad.write_bytes(bad.read_bytes()[:200])  # cut mid-stream: never a half-unpacked folder
    settings = StorageSettings(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InputError, match="cut.tar.gz: not a readable tar archive"):
        localize(bad, settings)
    assert [p for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []
    empty = _tar(tmp_path / "empty.tar.gz", [(_file("readme.txt"), b"hello")])
    with pytest.raises(InputError, match="empty.tar.gz: no config.yaml"):
        localize(empty, settings)


def test_model_names_follow_the_folder():
    assert model_name("s3://bucket/models/churn/model.tar.gz") == "churn"
    assert model_name("s3://bucket/models/churn.tar.gz") == "churn"
    assert model_name("s3://bucket/models/churn/") == "churn"
    assert model_name("https://host/m/shop.zip?X-Amz-Signature=abc") == "shop"
    from mltk.predictors import parse_model_spec

    assert parse_model_spec("https://host/m/shop.zip?sig=a=b") == (
        "shop", "https://host/m/shop.zip?sig=a=b")
    assert parse_model_spec("x=s3://b/k.tar.gz") == ("x", "s3://b/k.tar.gz")


# -- a real S3 API server (moto) on loopback -------------------------------------------------
@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("moto")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # the condition: moto answers HTTP
        assert proc.poll() is None, log.seek(0) or log.read()
        try:
            httpx.get(url, timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    client = boto3.client("s3", endpoint_url=url)
    client.create_bucket(Bucket="models")
    try:
        yield client, env
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(30)
        log.close()


def _upload_folder(client, folder: Path, prefix: str) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            client.upload_file(str(p), "models", f"{prefix}/{p.relative_to(folder)}")


def test_s3_archives_and_folders_are_fetched_once_and_verified(s3, tmp_path):
    client, _ = s3
    folder = _model_folder(tmp_path)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=".")
    client.upload_file(str(archive), "models", "churn/model.tar.gz")
    _upload_folder(client, folder, "folders/churn")
    settings = StorageSettings(cache_dir=str(tmp_path / "cache"))
    local = Path(localize("s3://models/churn/model.tar.gz", settings))
    assert (local / "sub" / "weights.bin").read_bytes() == \
        (folder / "sub" / "weights.bin").read_bytes()
    assert localize("s3://models/churn/model.tar.gz", settings) == str(local)
    as_folder = Path(localize("s3://models/folders/churn/", settings))
    assert (as_folder / "config.yaml").read_text() == "kind: two-group\n"
    assert as_folder != local
    # a new version of the object is a new cache entry; the old one is not reused
    (folder / "config.yaml").write_text("kind: two-group\n# v2\n")
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=".")
    client.upload_file(str(archive), "models", "churn/model.tar.gz")
    again = Path(localize("s3://models/churn/model.tar.gz", settings))
    assert again != local and "# v2" in (again / "config.yaml").read_text()
    with pytest.raises(InputError, match="s3://models/nope.tar.gz: no such object"):
        localize("s3://models/nope.tar.gz", settings)
    client.put_object(Bucket="models", Key="evil/model.tar.gz", Body=_tar(
        tmp_path / "evil.tar.gz", [(_file("../../evil"), b"x")]).read_bytes())
    with pytest.raises(UnsafeArchive, match="path traversal"):
        localize("s3://models/evil/model.tar.gz", settings)


@pytest.mark.slow
def test_serve_from_s3_answers_like_xgb_predict(s3, tmp_path, cancer_model, mltk_proc):
    from tests.test_serve import Server

    client, env = s3
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(cancer_model / "model", arcname=".")
    client.upload_file(str(archive), "models", "cancer/model.tar.gz")
    rows = (cancer_model / "rows.csv").read_text()
    expected = mltk_proc("xgb-predict", cancer_model / "model", cancer_model / "rows.csv",
                         "--format", "json")
    assert expected.returncode == 0, expected.stderr
    server = Server("s3://models/cancer/model.tar.gz", "--workers", "2",
                    env={**env, "MLTK_STORAGE_CACHE_DIR": str(tmp_path / "cache")})
    try:
        server.wait_ready()
        meta = httpx.get(server.url + "/v2/models/cancer", timeout=10)
        assert meta.status_code == 200, meta.text  # named after the archive's folder
        got = httpx.post(server.url + "/invocations", content=rows,
                         headers={"Content-Type": "text/csv", "Accept": "application/json"},
                         timeout=60)
        assert got.status_code == 200, got.text
    finally:
        assert server.stop() == 0, server.log()
    want = {r["patient"]: r["probability"] for r in json.loads(expected.stdout)}
    answers = got.json()
    answers = answers.get("predictions", answers) if isinstance(answers, dict) else answers
    assert len(answers) == 50
    for row, answer in zip(rows.splitlines()[1:], answers, strict=True):
        assert answer["probability"] == pytest.approx(want[row.split(",")[0]], abs=1e-6)
    assert "fetching model cancer from s3://models/cancer/model.tar.gz" in server.log()
    # fetched once, by the parent: one cache entry whatever the number of workers
    assert len(list((tmp_path / "cache").glob("*.source.json"))) == 1


def test_serve_refuses_a_hostile_archive_with_one_line(s3, tmp_path, mltk_proc):
    client, env = s3
    client.put_object(Bucket="models", Key="bad/model.tar.gz", Body=_tar(
        tmp_path / "bad.tar.gz", [(_file("config.yaml"), b"x"),
                                  (_link("w", "/etc/passwd"), None)]).read_bytes())
    proc = mltk_proc("serve", "s3://models/bad/model.tar.gz", "--port", str(free_port()),
                     env={**env, "MLTK_STORAGE_CACHE_DIR": str(tmp_path / "cache")},
                     timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "Error: s3://models/bad/model.tar.gz")  # the archive is named by its URL
    assert "outside the folder" in proc.stderr


def test_https_and_http_archives_are_fetched(tmp_path):
    folder = _model_folder(tmp_path)
    site = tmp_path / "site" / "churn"
    site.mkdir(parents=True)
    with tarfile.open(site / "model.tar.gz", "w:gz") as tf:
        tf.add(folder, arcname=".")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(tmp_path / "site")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/churn/model.tar.gz"
        deadline = time.monotonic() + 60
        while True:  # the condition: the web server answers
            try:
                httpx.head(url, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        settings = StorageSettings(cache_dir=str(tmp_path / "cache"))
        local = Path(localize(url, settings))
        assert (local / "config.yaml").read_text() == "kind: two-group\n"
        with pytest.raises(InputError, match="no such object"):
            localize(f"http://127.0.0.1:{port}/churn/none.tar.gz", settings)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_serve_unpacks_a_model_tar_gz_left_in_the_model_dir(tmp_path, cancer_model):
    """SageMaker's training jobs leave model.tar.gz; `mltk serve` with no MODEL unpacks it."""
    from tests.test_serve import Server

    model_dir = tmp_path / "opt-ml-model"
    model_dir.mkdir()
    with tarfile.open(model_dir / "model.tar.gz", "w:gz") as tf:
        tf.add(cancer_model / "model", arcname="analysis")
    server = Server(env={"MLTK_MODEL_DIR": str(model_dir),
                         "MLTK_STORAGE_CACHE_DIR": str(tmp_path / "cache")})
    try:
        server.wait_ready()
        rows = (cancer_model / "rows.csv").read_text().splitlines()
        got = httpx.post(server.url + "/invocations", content="\n".join(rows[:3]) + "\n",
                         headers={"Content-Type": "text/csv"}, timeout=60)
        assert got.status_code == 200, got.text
    finally:
        assert server.stop() == 0, server.log()
    assert list(model_dir.iterdir()) == [model_dir / "model.tar.gz"]  # read-only use


def test_a_model_repository_lists_its_folders_and_archives(s3, tmp_path):
    from mltk.storage import list_models

    client, _ = s3
    folder = _model_folder(tmp_path)
    _upload_folder(client, folder, "repo/churn")
    client.put_object(Bucket="models", Key="repo/shop.tar.gz", Body=b"x")
    client.put_object(Bucket="models", Key="repo/readme.txt", Body=b"not a model")
    assert list_models("s3://models/repo/") == {"churn": "s3://models/repo/churn",
                                                "shop": "s3://models/repo/shop.tar.gz"}
    local = tmp_path / "repo"
    shutil.copytree(folder, local / "churn")
    (local / "shop.zip").write_bytes(b"x")
    (local / ".cache").mkdir()
    assert list_models(local) == {"churn": str(local / "churn"), "shop": str(local / "shop.zip")}
    with pytest.raises(InputError, match="no such model repository"):
        list_models(tmp_path / "none")
