"""mltk index and mltk.similar: vectors in, neighbours out, exactly as brute force says.

Every answer is checked against a NumPy brute-force search over the same vectors; bad input
(wrong dimension, NaN, an empty index, k above the count, a damaged index folder, an unknown id,
another model's vectors) must give one clear line, never a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mltk import settings
from mltk.errors import InputError
from mltk.similar import (
    PCA,
    SimilarityIndex,
    VectorSet,
    Where,
    choose_factory,
    l2_normalize,
    read_vectors,
    write_vectors,
)


def clustered(n: int, d: int, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Vectors in clusters (as embeddings are), not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    return (centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, d))).astype(
        np.float32)


def brute(index_vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    sims = l2_normalize(queries) @ l2_normalize(index_vectors).T
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


@pytest.fixture
def catalogue(tmp_path):
    """3,000 clustered 32-d vectors as .npy + ids.csv with a category and a price."""
    x = clustered(3000, 32)
    rng = np.random.default_rng(1)
    meta = pd.DataFrame({"id": [f"item{i}" for i in range(len(x))],
                         "category": rng.choice(["bags", "shoes", "hats"], len(x)),
                         "price": rng.integers(100, 10_000, len(x))})
    np.save(tmp_path / "v.npy", x)
    meta.to_csv(tmp_path / "ids.csv", index=False)
    return tmp_path, x, meta


def query_json(cli, *args):
    result = cli("index", "query", *args, "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- exact index through the CLI -----------------------------------------------------------------


def test_build_then_query_ids_equals_brute_force_and_leaves_the_item_out(cli, catalogue):
    root, x, meta = catalogue
    built = cli("index", "build", root / "v.npy", "--ids", root / "ids.csv", "--out",
                root / "idx", "-f", "json")
    assert built.exit_code == 0, built.output
    report = json.loads(built.stdout)[0]
    assert report["factory"] == "Flat" and report["recall@10"] == 1.0
    assert "recall@10 1.0 against exact search" in built.stderr
    records = query_json(cli, root / "idx", "item5", "item7", "-k", "5")
    assert [r["query"] for r in records] == ["item5", "item7"]
    expected = brute(x, x[[5, 7]], 6)[:, 1:]  # its own vector first: left out
    for rec, rows in zip(records, expected, strict=True):
        assert [n["id"] for n in rec["neighbors"]] == [f"item{r}" for r in rows]
        first = rec["neighbors"][0]
        row = int(first["id"][4:])
        assert first["category"] == meta.category[row] and first["price"] == meta.price[row]
        scores = [n["score"] for n in rec["neighbors"]]
        assert scores == sorted(scores, reverse=True)


def test_every_format_gives_one_record_per_query(cli, catalogue):
    root, *_ = catalogue
    assert cli("index", "build", root / "v.npy", "--out", root / "idx").exit_code == 0
    nd = cli("index", "query", root / "idx", "1", "2", "3", "-k", "4", "-f", "ndjson")
    assert [json.loads(line)["query"] for line in nd.stdout.splitlines()] == [1, 2, 3]
    csv = cli("index", "query", root / "idx", "1", "2", "3", "-k", "4", "-f", "csv")
    lines = csv.stdout.splitlines()
    assert lines[0] == "query,neighbors" and len(lines) == 4
    table = cli("index", "query", root / "idx", "1", "2", "-k", "4", "-f", "table")
    assert table.exit_code == 0 and "neighbors" in table.stdout


def test_query_by_vectors_and_k_larger_than_the_index(cli, catalogue, tmp_path):
    root, x, _ = catalogue
    np.save(tmp_path / "small.npy", x[:20])
    assert cli("index", "build", tmp_path / "small.npy", "--out", tmp_path / "s").exit_code == 0
    np.save(tmp_path / "q.npy", x[100:102])
    records = query_json(cli, tmp_path / "s", "--vectors", tmp_path / "q.npy", "-k", "50")
    assert [len(r["neighbors"]) for r in records] == [20, 20]  # all there are, no padding
    assert [n["id"] for n in records[0]["neighbors"]] == brute(x[:20], x[100:101], 20)[0].tolist()
    by_id = query_json(cli, tmp_path / "s", "3", "-k", "50")
    assert len(by_id[0]["neighbors"]) == 19 and 3 not in [n["id"] for n in by_id[0]["neighbors"]]


def test_image_queries_of_an_index_without_a_model_say_what_to_give(cli, catalogue):
    root, *_ = catalogue
    cli("index", "build", root / "v.npy", "--out", root / "idx")
    result = cli("index", "query", root / "idx", "photo.jpg")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: photo.jpg: an image, but this index has no model; "
                                     "give --vectors or ids (image queries need an index built "
                                     "from `mltk embed` vectors)")
    unknown = cli("index", "query", root / "idx", "99999")
    assert unknown.stderr.strip() == "Error: query '99999': no such id in the index"


# -- filters -----------------------------------------------------------------------------------


def test_where_filters_match_brute_force_inside_the_allowed_set(cli, catalogue):
    root, x, meta = catalogue
    cli("index", "build", root / "v.npy", "--ids", root / "ids.csv", "--out", root / "idx")
    where = "category == 'bags' and price <= 2000"
    allowed = np.flatnonzero(((meta.category == "bags") & (meta.price <= 2000)).to_numpy())
    records = query_json(cli, root / "idx", "item0", "-k", "10", "--where", where)
    got = [int(n["id"][4:]) for n in records[0]["neighbors"]]
    cand = allowed[allowed != 0]
    assert got == cand[brute(x[cand], x[:1], 10)[0]].tolist()
    assert all(n["category"] == "bags" and n["price"] <= 2000 for n in records[0]["neighbors"])


def test_selective_filter_on_an_ivf_index_never_returns_fewer_than_k(tmp_path):
    x = clustered(30_000, 32, seed=3)
    flag = np.zeros(len(x), dtype=int)
    flag[np.random.default_rng(0).choice(len(x), 300, replace=False)] = 1  # 1% allowed
    vs = VectorSet(x, np.arange(len(x)), pd.DataFrame({"flag": flag}), {}, "x")
    cfg = settings.load("similar", exact_max=1000, recall_queries=200)
    index, report = SimilarityIndex.build(vs, cfg)
    assert report["factory"].startswith("IVF") and report["recall@10"] >= 0.95
    allowed = Where("flag == 1").mask(index.items)
    queries = index.prepare(x[:50], "q")
    truth = np.flatnonzero(allowed)[brute(x[allowed], x[:50], 10)]
    for limit in (20_000, 0):  # exact inside the allowed set; faiss with a selector
        index.config["filter_exact_max"] = limit
        found = index.search(queries, 10, allowed=allowed)
        assert all(len(rows) == 10 and allowed[rows].all() for rows, _ in found)
        hits = np.mean([len(np.intersect1d(r, t)) / 10 for (r, _), t in zip(found, truth,
                                                                          strict=True)])
        assert hits >= 0.95, (limit, hits)
    only = np.zeros(len(x), dtype=bool)
    only[[5, 9, 11]] = True  # fewer allowed than k: all of them, nothing else
    rows, _ = index.search(queries[:1], 10, allowed=only)[0]
    assert sorted(rows.tolist()) == [5, 9, 11]


@pytest.mark.parametrize(("text", "message"), [
    ("price <=", "not a filter expression"),
    ("colour == 'red'", "no column 'colour'"),
    ("__import__('os').system('true')", "is not a column, a literal or a comparison"),
    ("price + 1 > 3", "is not a column, a literal or a comparison"),
])
def test_where_refuses_what_it_does_not_understand(text, message):
    table = pd.DataFrame({"price": [1, 2], "category": ["a", "b"]})
    with pytest.raises(InputError, match=message):
        Where(text).mask(table)


def test_where_chains_in_and_not_and_missing_values():
    table = pd.DataFrame({"price": [100, 2000, None, 6000], "category": ["a", "b", "a", "c"]})
    assert Where("1000 <= price < 7000").mask(table).tolist() == [False, True, False, True]
    assert Where("category in ['a', 'c'] and not price > 5000").mask(table).tolist() == [
        True, False, True, False]
    assert Where("category not in ['a']").mask(table).tolist() == [False, True, False, True]


# -- IVF, add and remove -------------------------------------------------------------------------


def test_ivf_build_add_remove_keeps_ids_and_recall(tmp_path):
    x = clustered(24_000, 32, seed=5)
    ids = np.array([f"p{i}" for i in range(len(x))], dtype=object)
    cfg = settings.load("similar", exact_max=1000, recall_queries=200)
    index, report = SimilarityIndex.build(VectorSet(x[:20_000], ids[:20_000], pd.DataFrame(),
                                                    {}, "x"), cfg)
    assert report["factory"].startswith("IVF") and report["recall@10"] >= cfg.target_recall
    index.save(tmp_path / "idx")
    index = SimilarityIndex.load(tmp_path / "idx")
    assert index.remove([f"p{i}" for i in range(0, 20_000, 4)]) == 5000
    assert index.add(VectorSet(x[20_000:], ids[20_000:], pd.DataFrame(), {}, "new")) == 4000
    index.save(tmp_path / "idx")
    index = SimilarityIndex.load(tmp_path / "idx")
    keep = np.array([i for i in range(len(x)) if not (i < 20_000 and i % 4 == 0)])
    assert len(index) == len(keep)
    queries = x[np.random.default_rng(2).choice(len(x), 200, replace=False)]
    found = index.search(index.prepare(queries, "q"), 10)
    truth = keep[brute(x[keep], queries, 10)]
    got = [index.items["id"].to_numpy()[rows] for rows, _ in found]
    recall = np.mean([len(np.intersect1d(g, ids[t])) / 10 for g, t in zip(got, truth,
                                                                         strict=True)])
    assert recall >= 0.95
    with pytest.raises(InputError, match="id 'p24000' not in the index"):
        index.remove(["p24000"])
    with pytest.raises(InputError, match="id 'p20001' is already in the index"):
        index.add(VectorSet(x[20_001:20_002], ids[20_001:20_002], pd.DataFrame(), {}, "again"))


def test_choose_factory_follows_size_and_memory_budget():
    cfg = settings.load("similar")
    assert choose_factory(10_000, 128, cfg) == "Flat"
    assert choose_factory(1_000_000, 128, cfg) == "IVF4096,SQfp16"
    assert choose_factory(1_000_000, 128, cfg.replace(memory_mb=200)) == "IVF4096,SQ8"
    assert choose_factory(1_000_000, 128, cfg.replace(memory_mb=50)) == "IVF4096,PQ32"
    assert choose_factory(10, 8, cfg.replace(factory="HNSW32")) == "HNSW32"


def test_cli_add_and_remove(cli, catalogue, tmp_path):
    root, x, _ = catalogue
    np.save(tmp_path / "a.npy", x[:100])
    cli("index", "build", tmp_path / "a.npy", "--out", tmp_path / "idx")
    (tmp_path / "new.txt").write_text("\n".join(str(i) for i in range(100, 110)))
    np.save(tmp_path / "b.npy", x[100:110])
    added = cli("index", "add", tmp_path / "idx", tmp_path / "b.npy", "--ids",
                tmp_path / "new.txt", "-f", "json")
    assert json.loads(added.stdout) == [{"added": 10, "count": 110}]
    missing = cli("index", "remove", tmp_path / "idx", "3", "5000")
    assert missing.exit_code == 1 and missing.stderr.strip() == (
        "Error: id 5000 not in the index")
    removed = cli("index", "remove", tmp_path / "idx", "3", "5000", "--missing-ok", "-f", "json")
    assert json.loads(removed.stdout) == [{"removed": 1, "count": 109}]
    records = query_json(cli, tmp_path / "idx", "105", "-k", "3")
    assert 3 not in [n["id"] for n in records[0]["neighbors"]]
    info = json.loads(cli("index", "info", tmp_path / "idx", "-f", "json").stdout)[0]
    assert info["count"] == 109 and info["dim"] == 32


# -- inputs -------------------------------------------------------------------------------------


def test_parquet_source_with_a_list_column(cli, tmp_path):
    x = clustered(200, 8)
    pd.DataFrame({"sku": [f"s{i}" for i in range(200)], "vector": list(x),
                  "brand": ["b"] * 200}).to_parquet(tmp_path / "v.parquet")
    built = cli("index", "build", tmp_path / "v.parquet", "--id-column", "sku",
                "--out", tmp_path / "idx")
    assert built.exit_code == 0, built.output
    rec = query_json(cli, tmp_path / "idx", "s0", "-k", "2")[0]
    assert rec["neighbors"][0]["brand"] == "b"
    bad = pd.DataFrame({"id": [1, 2, 3], "vector": [[0.1, 0.2], [0.1, 0.2], [0.3]]})
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad.parquet: row 2 has 1 dims, expected 2"):
        read_vectors(tmp_path / "bad.parquet")


def test_nan_and_wrong_dimensions_name_file_and_row(cli, tmp_path):
    x = clustered(50, 8)
    x[17, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    result = cli("index", "build", tmp_path / "nan.npy", "--out", tmp_path / "idx")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {tmp_path / 'nan.npy'}: row 17 (id 17) has NaN "
                                     f"or infinite values")
    np.save(tmp_path / "ok.npy", clustered(50, 8))
    np.save(tmp_path / "wide.npy", clustered(3, 9))
    cli("index", "build", tmp_path / "ok.npy", "--out", tmp_path / "idx")
    wrong = cli("index", "query", tmp_path / "idx", "--vectors", tmp_path / "wide.npy")
    assert wrong.exit_code == 1 and wrong.stderr.strip() == (
        f"Error: {tmp_path / 'wide.npy'}: vectors have 9 dims; the index has 8")
    np.save(tmp_path / "empty.npy", np.zeros((0, 8), np.float32))
    empty = cli("index", "build", tmp_path / "empty.npy", "--out", tmp_path / "e")
    assert empty.stderr.strip() == f"Error: {tmp_path / 'empty.npy'}: no vectors to index"


def test_an_emptied_index_says_so(cli, tmp_path):
    np.save(tmp_path / "v.npy", clustered(3, 4))
    np.save(tmp_path / "q.npy", clustered(1, 4))
    cli("index", "build", tmp_path / "v.npy", "--out", tmp_path / "idx")
    assert cli("index", "remove", tmp_path / "idx", "0", "1", "2").exit_code == 0
    result = cli("index", "query", tmp_path / "idx", "--vectors", tmp_path / "q.npy")
    assert result.exit_code == 1 and result.stderr.strip() == (
        "Error: the index is empty: nothing to search (add vectors with `mltk index add`)")


def test_damaged_index_folders_give_one_clear_line(cli, tmp_path):
    np.save(tmp_path / "v.npy", clustered(100, 8))
    cli("index", "build", tmp_path / "v.npy", "--out", tmp_path / "idx")
    folder = tmp_path / "idx"
    (faiss_file,) = folder.glob("index-*.faiss")
    data = faiss_file.read_bytes()
    faiss_file.write_bytes(data[: len(data) // 2])
    truncated = cli("index", "query", folder, "1")
    assert truncated.exit_code == 1 and "Traceback" not in truncated.output
    assert truncated.stderr.startswith(f"Error: {faiss_file}: truncated or corrupted")
    faiss_file.write_bytes(data[:-8] + b"\x00" * 8)
    assert "corrupted (checksum differs" in cli("index", "info", folder).stderr
    (folder / "manifest.json").write_text("{not json")
    assert "unreadable manifest" in cli("index", "info", folder).stderr
    (folder / "manifest.json").unlink()
    assert cli("index", "info", folder).stderr.strip() == (
        f"Error: {folder}: not an mltk index (no manifest.json: not built, or its first save "
        f"was interrupted)")
    assert "no such index folder" in cli("index", "info", tmp_path / "nope").stderr


def test_an_interrupted_save_leaves_the_previous_generation_loadable(tmp_path):
    x = clustered(100, 8)
    index, _ = SimilarityIndex.build(VectorSet(x, np.arange(100), pd.DataFrame(), {}, "x"),
                                     settings.load("similar"))
    index.save(tmp_path / "idx")
    index.remove([1, 2])
    # A crash after the new index file was written, before the manifest names it:
    (tmp_path / "idx" / "index-2.faiss").write_bytes(b"half-written")
    loaded = SimilarityIndex.load(tmp_path / "idx")
    assert len(loaded) == 100
    index.save(tmp_path / "idx")  # the next save replaces the leftover, drops generation 1
    assert len(SimilarityIndex.load(tmp_path / "idx")) == 98
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "index-2.faiss", "items-2.parquet", "manifest.json"]


# -- vectors folders, PCA and models -----------------------------------------------------------


def test_vectors_folder_is_readable_without_mltk_and_carries_its_pca(tmp_path):
    x = clustered(500, 24)
    pca = PCA(8, whiten=True).fit(x)
    reduced = l2_normalize(pca.transform(x))
    folder = write_vectors(tmp_path / "vec", reduced, [f"a{i}" for i in range(500)],
                           pd.DataFrame({"price": np.arange(500)}), model="runs/m1",
                           identity="abc123", normalized=True, pca=pca)
    plain = np.load(folder / "vectors.npy")
    ids = pd.read_parquet(folder / "ids.parquet")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert plain.dtype == np.float32 and plain.shape == (500, 8)
    assert ids.columns.tolist() == ["id", "price"] and ids.id[3] == "a3"
    assert config["count"] == 500 and config["identity"] == "abc123"
    assert config["pca"]["input_dim"] == 24 and config["pca"]["whiten"] is True
    vs = read_vectors(folder)
    assert vs.identity == "abc123" and vs.ids[0] == "a0"
    index, _ = SimilarityIndex.build(vs, settings.load("similar"),
                                     pca=PCA.load(folder / "pca.npz"))
    index.save(tmp_path / "idx")
    index = SimilarityIndex.load(tmp_path / "idx")
    # raw 24-d queries are projected by the saved PCA: the same neighbours as reduced ones
    raw = index.search(index.prepare(x[:5], "raw"), 5)
    red = index.search(index.prepare(reduced[:5], "reduced"), 5)
    assert all((a[0] == b[0]).all() for a, b in zip(raw, red, strict=True))
    whitened = pca.transform(x)
    assert np.allclose(whitened.std(axis=0, ddof=1), 1.0, atol=1e-3)


def test_a_half_written_vectors_folder_is_refused(tmp_path):
    folder = write_vectors(tmp_path / "vec", clustered(10, 4), list(range(10)))
    (folder / "config.yaml").unlink()
    with pytest.raises(InputError, match="no config.yaml: missing or half-written"):
        read_vectors(folder)


def test_vectors_of_another_model_are_refused_naming_both(tmp_path):
    x = clustered(60, 8)
    write_vectors(tmp_path / "a", x[:50], list(range(50)), model="runs/resnet",
                  identity="aaa")
    write_vectors(tmp_path / "b", x[50:], list(range(50, 60)), model="runs/small_cnn",
                  identity="bbb")
    index, _ = SimilarityIndex.build(read_vectors(tmp_path / "a"), settings.load("similar"))
    with pytest.raises(InputError) as err:
        index.add(read_vectors(tmp_path / "b"))
    assert str(err.value) == (f"{tmp_path / 'b'}: made with model 'runs/small_cnn' (identity "
                              f"bbb), but the index was built with 'runs/resnet' (identity aaa)")


def test_build_with_pca_dim(cli, catalogue):
    root, x, _ = catalogue
    built = cli("index", "build", root / "v.npy", "--dim", "8", "--out", root / "idx",
                "-f", "json")
    assert json.loads(built.stdout)[0]["dim"] == 8
    np.save(root / "q.npy", x[:2])
    records = query_json(cli, root / "idx", "--vectors", root / "q.npy", "-k", "3")
    assert records[0]["neighbors"][0]["id"] == 0  # its own vector, projected the same way
    assert os.path.exists(next(Path(root / "idx").glob("pca-*.npz")))


def test_hnsw_by_factory_searches_but_refuses_removal_clearly(tmp_path):
    x = clustered(2000, 16)
    index, report = SimilarityIndex.build(VectorSet(x, np.arange(2000), pd.DataFrame(), {}, "x"),
                                          settings.load("similar", factory="HNSW16"))
    assert report["factory"] == "HNSW16" and report["recall@10"] >= 0.9 and "efSearch" in report
    index.save(tmp_path / "h")
    loaded = SimilarityIndex.load(tmp_path / "h")
    rows, _ = loaded.search(loaded.prepare(x[:1], "q"), 5, exclude=[0])[0]
    assert len(rows) == 5 and 0 not in rows
    with pytest.raises(InputError, match=r"this index \(HNSW16\) cannot remove items"):
        loaded.remove([1])


def test_a_folder_of_images_says_it_needs_vectors(cli, tmp_path):
    import cv2

    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    result = cli("index", "build", tmp_path / "photos", "--out", tmp_path / "idx")
    assert result.exit_code == 1 and "a folder of images; indexing images needs their " \
        "vectors" in result.stderr


@pytest.mark.slow
def test_concurrent_adds_take_turns_and_lose_nothing(catalogue, tmp_path):
    import subprocess

    from tests.conftest import mltk_executable

    root, x, _ = catalogue
    np.save(tmp_path / "base.npy", x[:100])
    build = subprocess.run(mltk_executable() + ["index", "build", str(tmp_path / "base.npy"),
                                                "--out", str(tmp_path / "idx")],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    procs = []
    for n in range(4):
        rows = range(100 + 50 * n, 150 + 50 * n)
        np.save(tmp_path / f"part{n}.npy", x[rows.start: rows.stop])
        (tmp_path / f"part{n}.txt").write_text("\n".join(map(str, rows)))
        procs.append(subprocess.Popen(
            mltk_executable() + ["index", "add", str(tmp_path / "idx"),
                                 str(tmp_path / f"part{n}.npy"), "--ids",
                                 str(tmp_path / f"part{n}.txt")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    index = SimilarityIndex.load(tmp_path / "idx")
    assert sorted(index.items["id"].tolist()) == list(range(300))


def test_ivf_pq_by_factory_builds_filters_and_removes(tmp_path):
    x = clustered(12_000, 32, seed=7)
    flag = (np.arange(len(x)) % 50 == 0).astype(int)
    cfg = settings.load("similar", factory="IVF64,PQ8", recall_queries=200, threads=1)
    index, report = SimilarityIndex.build(
        VectorSet(x, np.arange(len(x)), pd.DataFrame({"flag": flag}), {}, "x"), cfg)
    assert report["factory"] == "IVF64,PQ8" and 0.3 < report["recall@10"] <= 1.0
    index.save(tmp_path / "pq")
    index = SimilarityIndex.load(tmp_path / "pq")
    assert index.remove([0, 50]) == 2
    allowed = Where("flag == 1").mask(index.items)
    found = index.search(index.prepare(x[:3], "q"), 10, allowed=allowed)
    assert all(len(r) == 10 and allowed[r].all() for r, _ in found)
    sizes = index.save(tmp_path / "pq")
    assert sizes["bytes_per_vector"] < 4 * 32  # codes, not the float vectors


def test_bad_factory_and_non_npy_files_are_one_clear_line(cli, tmp_path):
    np.save(tmp_path / "v.npy", clustered(100, 8))
    (tmp_path / "text.npy").write_text("1,2,3\n")
    bad = cli("index", "build", tmp_path / "v.npy", "--factory", "garbage", "--out",
              tmp_path / "idx")
    assert bad.stderr.strip() == ("Error: faiss cannot make index 'garbage' for 8 dims (could "
                                  "not parse index string garbage)")
    small = cli("index", "build", tmp_path / "v.npy", "--factory", "IVF256,Flat", "--out",
                tmp_path / "idx")
    assert small.stderr.strip() == ("Error: IVF256,Flat: 256 lists need at least that many "
                                    "vectors, got 100")
    text = cli("index", "build", tmp_path / "text.npy", "--out", tmp_path / "idx")
    assert text.stderr.strip() == f"Error: {tmp_path / 'text.npy'}: not a .npy matrix (no " \
        "NumPy header)"
