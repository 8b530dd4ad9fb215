"""``mltk demo``: every available capability run end to end on generated sample data.

Each capability contributes a :class:`Step`; :func:`run` runs them in order into one
folder and writes ``index.md`` and ``index.html`` (the same, opening each step's
``report.html`` first) linking every output. A step that fails is recorded in the index
with its error and the remaining steps still run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mltk._atomic import write_text

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StepResult:
    summary: str
    outputs: list[tuple[str, Path]] = dataclasses.field(default_factory=list)
    report: Path | None = None  # the step's report.html, linked first from index.html


@dataclasses.dataclass
class Step:
    name: str
    title: str
    run: Callable[[Path, int], StepResult]


@dataclasses.dataclass
class StepReport:
    name: str
    title: str
    seconds: float
    ok: bool
    summary: str
    outputs: list[tuple[str, Path]]
    report: Path | None = None


def _step_sample_data(root: Path, seed: int) -> StepResult:
    from mltk.datasets import make

    info = make("labelled-images", root / "data" / "labelled-images", n=300, seed=seed)
    return StepResult(
        f"{info.n} real handwritten-digit scans (scikit-learn) as RGB JPEGs in "
        f"{info.extra['classes']} class folders.",
        [("images (one folder per class)", info.path), ("ground truth", info.truth)],
    )


def _step_colors(root: Path, seed: int) -> StepResult:
    import csv

    from mltk import _config
    from mltk._atomic import write_json
    from mltk.colors import ColorSettings, analyze_paths, summarize
    from mltk.colors.swatch import write_swatches
    from mltk.datasets import make

    info = make("product-images", root / "data" / "product-images", n=60, seed=seed)
    cfg = _config.resolve("colors", {"seed": seed})
    settings = ColorSettings.from_config(cfg)
    truth = list(csv.DictReader(open(info.truth, encoding="utf-8")))
    records = list(analyze_paths([info.path / t["file"] for t in truth], settings, jobs=None))
    roll = summarize(records)
    out = root / "colors"
    write_json(out / "colors.json", records)
    write_json(out / "summary.json", roll)
    hits = sum(r["colors"] and r["colors"][0]["name"] == t["main_color"]
               for r, t in zip(records, truth, strict=True))
    lines = ["# Dominant colours of the sample product photos", "",
             f"Top-1 name matches the generator's truth for {hits}/{len(truth)} photos.", "",
             "| file | truth | colours |", "|---|---|---|"]
    for r, t in zip(records, truth, strict=True):
        names = ", ".join(f"{c['name']} {c['share']:.0%}" for c in r["colors"]) or r["error"]
        lines.append(f"| {t['file']} | {t['main_color']} | {names} |")
    from mltk._atomic import write_text

    write_text(out / "colors.md", "\n".join(lines) + "\n")
    write_swatches(out / "swatches", records)
    _config.save(out / "config.yaml", cfg)
    from mltk.colors.report import write_report

    report = write_report(out, records, roll, cfg)
    return StepResult(
        f"`mltk colors` on {len(records)} generated product photos: top-1 name right for "
        f"{hits}/{len(truth)}; folder's main colours: "
        f"{', '.join(c['name'] for c in roll['colors'][:4])}.",
        [("report: the photos with their named swatches", report),
         ("per-image table", out / "colors.md"), ("per-image JSON", out / "colors.json"),
         ("folder roll-up JSON", out / "summary.json"),
         ("contact sheet", out / "swatches" / "contact_sheet.png")],
        report,
    )


def _step_tfrecord(root: Path, seed: int) -> StepResult:
    from mltk._atomic import write_json
    from mltk.datasets import make
    from mltk.tfrecords import BuildOptions, build, count_paths

    src = root / "data" / "labelled-images"
    if not (src / "truth.csv").exists():
        make("labelled-images", src, n=300, seed=seed)
    out = root / "tfrecords"
    manifest = build(src, out, BuildOptions(split={"train": 0.8, "validation": 0.2}, shards=5,
                                            seed=seed), overwrite=True)
    counts = count_paths([out], use_manifest=False, verify=True)
    write_json(root / "tfrecords-count.json", counts)
    total = sum(r["records"] for r in counts)
    splits = ", ".join(f"{k} {v['records']}" for k, v in manifest["splits"].items())
    return StepResult(
        f"`mltk tfrecord build` packed the digits into {len(manifest['shards'])} shards "
        f"({splits}); "
        f"`mltk tfrecord count --verify` found {total} records, all CRCs good.",
        [("manifest", out / "manifest.json"), ("labels", out / "labels.txt"),
         ("verified counts per shard", root / "tfrecords-count.json")],
    )


def _step_train(root: Path, seed: int) -> StepResult:
    from mltk import settings
    from mltk.classify import Classifier, evaluate, train

    shards = root / "tfrecords"
    if not (shards / "manifest.json").exists():
        _step_tfrecord(root, seed)
    cfg = settings.load("train", model="small_cnn", image_size=32, epochs=15, gpus=0, seed=seed)
    run = root / "train"
    summary = train(cfg, run, data=[str(shards)], overwrite=True)
    evaluation = evaluate(Classifier.load(run), [str(shards)], split="validation",
                          with_predictions=True)
    evaluation.save(run / "evaluation")
    result = evaluation.metrics
    return StepResult(
        f"`mltk train` fitted the small CNN to the {summary.train_records} training digits "
        f"on the CPU ({summary.steps} steps, {summary.images_per_second:.0f} images/s); "
        f"`mltk evaluate` on the {result['records']} validation digits: accuracy "
        f"{result['accuracy']:.3f}, top-3 {result['top3_accuracy']:.3f}, macro F1 "
        f"{result['macro_f1']:.3f}.",
        [("best model (Keras)", run / "best.keras"), ("training curves", run / "curves.png"),
         ("history", run / "history.csv"), ("settings", run / "config.yaml"),
         ("confusion matrix", run / "evaluation" / "confusion.png"),
         ("per-class report", run / "evaluation" / "per_class.csv"),
         ("predictions", run / "evaluation" / "predictions.csv"),
         ("evaluation report: confusions and the most confident mistakes",
          run / "evaluation" / "report.html")],
        run / "evaluation" / "report.html",
    )


def _step_similar(root: Path, seed: int) -> StepResult:
    """embed -> index -> query on the digit scans with the trained run; dedup of real photos
    and their imagededup-style copies (kept small: a few seconds after training)."""
    import csv

    from mltk import settings
    from mltk._atomic import atomic_open, write_json
    from mltk.classify import Classifier
    from mltk.datasets import make
    from mltk.similar import SimilarityIndex, embed_paths, find_duplicates, query_records
    from mltk.similar.queries import by_ids
    from mltk.similar.sheet import write_sheets

    run = root / "train"
    if not (run / "best.keras").exists():
        _step_train(root, seed)
    src = root / "data" / "labelled-images"
    paths = sorted(str(p) for p in src.rglob("*.jpg"))
    out = root / "similar"
    embedding = embed_paths(Classifier.load(run, need_tf=False), paths, dim=16, seed=seed)
    embedding.save(out / "vectors")
    index, built = SimilarityIndex.build(embedding.vector_set(), settings.load("similar",
                                                                                seed=seed),
                                         pca=embedding.pca)
    index.save(out / "index")
    asked = paths[:: max(1, len(paths) // 10)][:10]
    records = list(query_records(index, by_ids(index, asked), k=5))
    write_json(out / "neighbours.json", records)
    same = sum(Path(n["id"]).parent == Path(r["query"]).parent
               for r in records for n in r["neighbors"])
    dups = make("near-duplicates", root / "data" / "near-duplicates", n=8, seed=seed, copies=2)
    with open(dups.truth, encoding="utf-8") as fh:
        truth = {t["file"]: t["source"] for t in csv.DictReader(fh)}
    found = find_duplicates([dups.path / f for f in truth], settings.load("similar", seed=seed))
    with atomic_open(out / "dedup.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "group", "duplicate_of", "score",
                                                "error"])
        writer.writeheader()
        writer.writerows(found)
    sheets = write_sheets(out / "sheets", found)
    groups = {r["group"] for r in found if r["group"] is not None}
    pure = sum(len({truth[Path(r["path"]).name] for r in found if r["group"] == g}) == 1
               for g in groups)
    return StepResult(
        f"`mltk embed` gave {len(embedding)} digit scans {embedding.dim}-d vectors (PCA of "
        f"{embedding.input_dim} features); `mltk index build` ({built['factory']}, recall@10 "
        f"{built['recall@10']}); `mltk index query`: {same} of {5 * len(records)} neighbours "
        f"of {len(records)} scans show the same digit. `mltk dedup` on {len(found)} real "
        f"photos and copies: {len(groups)} groups ({pure} of one original each, "
        f"{dups.extra['originals']} originals).",
        [("vectors folder", out / "vectors"), ("index folder", out / "index"),
         ("neighbours of 10 scans (JSON)", out / "neighbours.json"),
         ("duplicate groups (CSV)", out / "dedup.csv"),
         *[(f"contact sheet {p.stem}", p) for p in sheets[:3]]],
    )


def _step_xgb(root: Path, seed: int) -> StepResult:
    import json

    from mltk import settings as mltk_settings
    from mltk._tables import load_table
    from mltk.datasets import make
    from mltk.xgb import analyze

    info = make("purchases", root / "data" / "purchases", n=3000, seed=seed)
    settings = mltk_settings.load("xgb", seed=seed, max_evals=6, max_rounds=150, folds=3)
    out = root / "xgb"
    analysis = analyze(load_table(info.files["data"]), "group", settings, id_cols=["user_id"])
    analysis.save(out)
    report = analysis.report
    truth = json.loads(info.truth.read_text())
    top = [f["feature"] for f in report["importance"][: len(truth["informative"])]]
    found = len(set(top) & set(truth["informative"]))
    m = report["metrics"]
    return StepResult(
        f"`mltk xgb-analyze` (DART, {report['tuning']['trials']} hyperopt trials) on 3,000 "
        f"generated users: test ROC AUC {m['roc_auc']:.3f}, best MCC {m['best_mcc']:.3f}; "
        f"{found} of the {len(truth['informative'])} informative features rank in the top "
        f"{len(truth['informative'])}.",
        [("report", out / "report.html"), ("report (Markdown)", out / "report.md"),
         ("every number", out / "report.json"),
         ("SHAP summary", out / "shap_summary.png"), ("trials", out / "trials.csv"),
         ("training data profile (for drift checks)", out / "data_profile.json"),
         ("model (XGBoost UBJ)", out / "model.ubj"), ("settings", out / "config.yaml")],
        out / "report.html",
    )


def _step_recommend(root: Path, seed: int) -> StepResult:
    from mltk import settings
    from mltk._atomic import write_json
    from mltk._tables import load_table
    from mltk.datasets import make
    from mltk.recommend import Recommender, evaluate, fit

    info = make("marketplace", root / "data" / "marketplace", n=2000, seed=seed)
    items, tx = load_table(info.files["items"]), load_table(info.files["transactions"])
    out = root / "recommend"
    fit(items, tx, settings.load("recommend", seed=seed),
        load_table(info.files["users"])).save(out)
    rec = Recommender.load(out)  # queried as `mltk recommend query` and mltk serve would
    report = rec.report
    ids = items["item_id"].head(3).tolist()
    examples = [{"item_id": i, **{k: v for k, v in vars(rec.query(i, 5, explain=True)).items()
                                  if k != "item_id"}} for i in ids]
    write_json(out / "example_queries.json", examples)
    table = evaluate(rec, tx, 10, seed)
    write_json(out / "evaluation.json", table)
    from mltk.recommend.report import write_report

    evaluation = write_report(out / "evaluation", table, {"model": "recommend/", "k": 10,
                                                          "seed": seed})
    by = {r["method"]: r for r in table}
    c = report["classifier"]
    return StepResult(
        f"`mltk recommend` on a generated marketplace: {report['rules']['meta_categories']} "
        f"meta-categories from {report['rules']['rules']} rules; classifier top-5 accuracy "
        f"{c['top5_accuracy']:.2f} (popularity {c['popularity_top5_accuracy']:.2f}); RankNet "
        f"NDCG@10 {report['ranknet']['ndcg_linear']:.3f}; hit rate@10 "
        f"{by['mltk']['hit_rate']:.3f} vs {by['popular_in_category']['hit_rate']:.3f} "
        f"(popular in category) and {by['random_in_meta']['hit_rate']:.3f} (random).",
        [("association rules", out / "rules.csv"), ("meta-categories", out / "meta_categories.csv"),
         ("fit metrics", out / "metrics.json"), ("explained queries", out / "example_queries.json"),
         ("evaluation report", evaluation), ("evaluation", out / "evaluation.json"),
         ("settings", out / "config.yaml")],
        evaluation,
    )


class _Exchanges:
    """Requests to the demo's server, each saved (request and response) as JSON and linked."""

    def __init__(self, base: str, out: Path) -> None:
        self.base, self.out = base, out
        self.outputs: list[tuple[str, Path]] = []

    def call(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
             ) -> tuple[int, Any]:
        import json
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def __call__(self, file: str, label: str, path: str, body: Any = None,
                 content_type: str = "", target: str | None = None, shown: Any = None) -> Any:
        """POST (or GET without a body), check 200, save request and response as JSON."""
        import json

        from mltk._atomic import write_json

        headers = {"Content-Type": content_type} if content_type else {}
        if target:
            headers["X-Amzn-SageMaker-Target-Model"] = target
        raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        status, answer = self.call(path, raw, headers)
        write_json(self.out / file, {"request": {"method": "POST" if body is not None else "GET",
                                                 "url": path, "headers": headers,
                                                 "body": body if shown is None else shown},
                                     "status": status, "response": answer})
        self.outputs.append((label, self.out / file))
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {answer}")
        return answer


def _image_exchanges(ex: _Exchanges, model: str, image: Path, label: str) -> Any:
    """The same JPEG through SageMaker /invocations and as a V2 BYTES tensor."""
    import base64

    got = ex(f"{model}_invocations.json", f"SageMaker /invocations: {label}", "/invocations",
             image.read_bytes(), "image/jpeg", model,
             shown=f"<{image.name}, {image.stat().st_size} bytes of image/jpeg>")
    tensor = {"name": "image", "datatype": "BYTES", "shape": [1]}
    ex(f"{model}_v2_infer.json", "V2 infer: the same JPEG as a BYTES tensor",
       f"/v2/models/{model}/infer",
       {"inputs": [{**tensor, "data": [base64.b64encode(image.read_bytes()).decode()]}]},
       "application/json", shown={"inputs": [{**tensor, "data": [f"<base64 of {image.name}>"]}]})
    return got["predictions"][0]


def _xgb_exchanges(ex: _Exchanges, data: Path) -> str:
    import csv

    with open(data, newline="", encoding="utf-8") as fh:
        rows = [{k: v for k, v in r.items() if k != "group"}
                for r, _ in zip(csv.DictReader(fh), range(3), strict=False)]
    for r in rows:  # JSON numbers and nulls, as a client would send them
        for k, v in r.items():
            try:
                r[k] = None if v == "" else int(v) if v.lstrip("-").isdigit() else float(v)
            except ValueError:
                pass
    ex("xgb_metadata.json", "V2 metadata of the two-group model", "/v2/models/xgb")
    scored = ex("xgb_invocations.json", "SageMaker /invocations: 3 users as JSON",
                "/invocations", {"instances": rows}, "application/json", "xgb")
    meta = ex.call("/v2/models/xgb")[1]
    tensors = [{"name": t["name"], "datatype": t["datatype"], "shape": [len(rows)],
                "data": [r[t["name"]] for r in rows]} for t in meta["inputs"]]
    ex("xgb_v2_infer.json", "V2 infer: the same users as column tensors",
       "/v2/models/xgb/infer", {"id": "demo-1", "inputs": tensors}, "application/json")
    first = scored["predictions"][0]
    return f"3 users scored (first: probability {first['probability']:.3f}, {first['label']})"


def _drift_exchanges(ex: _Exchanges, data: Path, rows: int = 500) -> str:
    """Rows of the training table scored, then the server's drift check of them."""
    import csv
    import io

    with open(data, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c for c in reader.fieldnames or [] if c != "group"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r, _ in zip(reader, range(rows), strict=False))
    ex("xgb_batch.json", f"SageMaker /invocations: {rows} users as CSV", "/invocations",
       buf.getvalue().encode(), "text/csv", "xgb", shown=f"<{rows} rows of {data.name}>")
    doc = ex("xgb_drift.json", "GET /drift/xgb: the rows scored against the training data",
             "/drift/xgb")
    return f"drift of the last {doc['rows']} rows scored: {doc['summary']}"


def _recommend_exchanges(ex: _Exchanges, items: Path) -> str:
    import csv

    with open(items, newline="", encoding="utf-8") as fh:
        item = int(next(csv.DictReader(fh))["item_id"])
    got = ex("recommend_invocations.json", "SageMaker /invocations: similar items",
             "/invocations", {"instances": [{"item_id": item, "k": 5}]}, "application/json",
             "recommend")
    ex("recommend_v2_infer.json", "V2 infer: the same query as tensors",
       "/v2/models/recommend/infer",
       {"inputs": [{"name": "item_id", "datatype": "INT64", "shape": [1], "data": [item]},
                   {"name": "k", "datatype": "INT64", "shape": [1], "data": [5]}]},
       "application/json")
    return f"{len(got['predictions'][0]['recommendations'])} items like {item}"


def _step_serve(root: Path, seed: int) -> StepResult:
    """`mltk serve` in a subprocess on a free loopback port, called over both protocols."""
    import sys

    from mltk.datasets import make
    from mltk.serving.launcher import free_port, running

    data = root / "data" / "purchases" / "purchases.csv"
    if not (root / "xgb" / "model.ubj").exists() or not data.exists():
        _step_xgb(root, seed)
    photos = root / "data" / "product-images"
    if not (photos / "truth.csv").exists():
        make("product-images", photos, n=60, seed=seed)
    models = {"xgb": root / "xgb", "colors": "colors"}
    if (root / "train" / "best.keras").exists():  # only when the train step ran
        models["digits"] = root / "train"
    if (root / "recommend" / "config.yaml").exists():
        models["recommend"] = root / "recommend"
    out = root / "serve"
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ex = _Exchanges(f"http://127.0.0.1:{port}", out)
    cmd = [sys.executable, "-m", "mltk", "serve",
           *[f"{name}={path}" if path != "colors" else "colors" for name, path in models.items()],
           "--port", str(port)]
    log_file = out / "server.log"
    t0 = time.perf_counter()
    with open(log_file, "wb+") as log, running(cmd, ex.base + "/v2/health/ready", log,
                                               grace=60) as proc:
        ready_s = time.perf_counter() - t0
        ex("ping.json", "GET /ping", "/ping")
        said = [_xgb_exchanges(ex, data)]
        said.append(_drift_exchanges(ex, data))
        photo = sorted(photos.glob("*.jpg"))[0]
        colours = _image_exchanges(ex, "colors", photo, "a JPEG's colours")
        said.append(f"{photo.name}'s main colour {colours['colors'][0]['name']}")
        if "digits" in models:
            digit = sorted((root / "data" / "labelled-images").glob("*/*.jpg"))[0]
            top = _image_exchanges(ex, "digits", digit, "a digit scan")
            said.append(f"a '{digit.parent.name}' scan read as '{top['label']}' "
                        f"(p {top['probability']:.2f})")
        if "recommend" in models:
            said.append(_recommend_exchanges(ex, root / "data" / "marketplace" / "items.csv"))
    if proc.returncode != 0:
        raise RuntimeError(f"mltk serve exited with {proc.returncode} after SIGTERM")
    ex.outputs.append(("server log", log_file))
    return StepResult(
        f"`mltk serve` ran {', '.join(models)} on 127.0.0.1:{port} (ready in {ready_s:.1f} s); "
        f"SageMaker `/invocations` and V2 `infer` answered: {'; '.join(said)}. SIGTERM stopped "
        "it cleanly (exit 0).", ex.outputs)


def steps() -> list[Step]:
    """The demo steps, in order. Capabilities append theirs here."""
    return [
        Step("data", "Sample data: labelled images", _step_sample_data),
        Step("colors", "Dominant colours of product photos", _step_colors),
        Step("tfrecord", "TFRecord shards from labelled images", _step_tfrecord),
        Step("train", "An image classifier trained and evaluated on the shards", _step_train),
        Step("similar", "Similar and duplicate photos", _step_similar),
        Step("xgb", "Which features separate one-time from repeat buyers", _step_xgb),
        Step("recommend", "Similar items without ratings", _step_recommend),
        Step("serve", "The models behind mltk serve, called over HTTP", _step_serve),
    ]


def run(out: Path, seed: int = 0, only: list[str] | None = None,
             on_step: Callable[[StepReport], None] | None = None) -> list[StepReport]:
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for step in steps():
        if only and step.name not in only:
            continue
        log.info(f"demo: {step.title} ...")
        t0 = time.perf_counter()
        try:
            result = step.run(out, seed)
            report = StepReport(step.name, step.title, time.perf_counter() - t0, True,
                                result.summary, result.outputs, result.report)
        except Exception as exc:  # one failed step must not hide the others
            log.warning(f"demo step {step.name} failed: {exc}")
            report = StepReport(step.name, step.title, time.perf_counter() - t0, False,
                                f"failed: {type(exc).__name__}: {exc}", [])
        reports.append(report)
        if on_step:
            on_step(report)
    write_text(out / "index.md", render_index(out, reports))
    write_text(out / "index.html", render_html_index(out, reports))
    return reports


def render_index(root: Path, reports: list[StepReport]) -> str:
    lines = ["# mltk demo", "",
             "Every step below ran on generated sample data; links are relative to this file.", ""]
    for r in reports:
        status = "" if r.ok else " — FAILED"
        lines += [f"## {r.title}{status}", "", f"{r.summary} ({r.seconds:.1f} s)", ""]
        for label, path in r.outputs:
            rel = os.path.relpath(path, root)
            lines.append(f"- [{label}]({Path(rel).as_posix()})")
        lines.append("")
    return "\n".join(lines)


def render_html_index(root: Path, reports: list[StepReport]) -> str:
    """index.html: each step's summary, its report.html and its other outputs (relative
    links, so the folder can be moved or zipped as a whole)."""
    from mltk import _report

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, root)).as_posix()

    ok = sum(r.ok for r in reports)
    steps = [{"title": r.title, "ok": r.ok, "summary": r.summary,
              "seconds": f"{r.seconds:.1f}", "report": rel(r.report) if r.report else None,
              "outputs": [(label, rel(path)) for label, path in r.outputs
                          if path != r.report]} for r in reports]
    return _report.render(
        "demo.html.j2", title="mltk demo", kicker="mltk demo",
        question="What does each mltk capability give on sample data?",
        answer=[f"{ok} of {len(reports)} steps ran on generated sample data"
                + ("." if ok == len(reports) else "; the failed ones say why below.")
                + " Each step's report opens offline in a browser."],
        headline=[("steps run", f"{ok} of {len(reports)}"),
                  ("seconds", f"{sum(r.seconds for r in reports):.0f}")],
        steps=steps)
