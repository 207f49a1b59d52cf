"""Tests of the evaluation protocols (lgf/evaluation/area_ranges.py, metrics.py), the detections
file of `python -m train.evaluate`, and the trainer's --area-ranges / --best-metric.

The reference is pycocotools itself: for the coco buckets our numbers must equal
COCOeval.summarize()'s exactly; for the tiny buckets each number must equal what summarize()
reports when that bucket is put in the place of one of its own three buckets."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lgf.evaluation import ALL_METRIC_NAMES, AREA_RANGES, METRIC_NAMES, coco_metrics
from lgf.evaluation.area_ranges import area_protocol, check_metric
from lgf.utils.setting_errors import SettingError
from train.evaluate import main as eval_main
from train.train import main as train_main
from train.train import parse_args, run

# (w, h) of ground-truth boxes: every bucket of both protocols has some
SIZES = [(4, 5), (7, 8), (10, 12), (14, 15), (20, 25), (28, 30), (40, 50), (90, 100), (120, 110)]


def _index(data):
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _synthetic_gt(num_images=6, seed=0):
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "width": 400, "height": 400, "file_name": f"{i}.png"})
        for w, h in SIZES:
            x, y = rng.uniform(0, 400 - w), rng.uniform(0, 400 - h)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(rng.choice([1, 3, 7])),
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c, "name": n} for c, n in ((1, "car"), (3, "bus"), (7, "van"))]
    return _index({"images": images, "annotations": anns, "categories": cats})


def _detections(coco, seed=1):
    """Jittered copies of most boxes (some with the wrong class), misses, and false positives."""
    rng = np.random.default_rng(seed)
    dets = []
    for a in coco.dataset["annotations"]:
        if rng.random() < 0.2:
            continue
        x, y, w, h = a["bbox"]
        jx, jy = rng.normal(0, 0.15 * w), rng.normal(0, 0.15 * h)
        sw, sh = np.exp(rng.normal(0, 0.15, size=2))
        cat = a["category_id"] if rng.random() < 0.85 else int(rng.choice([1, 3, 7]))
        box = [x + jx, y + jy, w * sw, h * sh]
        dets.append({"image_id": a["image_id"], "category_id": cat, "bbox": box})
    for img in coco.dataset["images"]:
        for _ in range(4):
            w, h = rng.uniform(3, 60, size=2)
            box = [rng.uniform(0, 340), rng.uniform(0, 340), w, h]
            dets.append({"image_id": img["id"], "category_id": 1, "bbox": box})
    for d in dets:
        d["bbox"] = [float(v) for v in d["bbox"]]
        d["score"] = float(rng.uniform(0.05, 1.0))
    return dets


def _summarize(coco, dets, area_rng, max_dets, image_ids=None):
    """pycocotools' own summary: COCOeval.stats with the given buckets (labelled all, small,
    medium, large, the labels summarize() looks up) and detection caps."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        if area_rng is not None:
            ev.params.areaRng = area_rng
            ev.params.areaRngLbl = ["all", "small", "medium", "large"]
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def _tiny_reference(coco, dets, image_ids=None):
    """Every tiny-protocol metric from summarize() runs whose 'small' bucket is the one asked."""
    p = AREA_RANGES["tiny"]
    everything = [0.0, 1e5**2]

    def run_for(bucket):
        return _summarize(coco, dets, [everything] + [bucket] * 3, p.max_dets, image_ids)

    whole = run_for(everything)
    ref = {"AP": whole[3], "AP50": whole[1], "AP75": whole[2]}
    ref.update({f"AR{m}": whole[6 + i] for i, m in enumerate(p.max_dets)})
    for r in p.ranges:
        stats = run_for([r.lo, r.hi])
        ref[f"AP_{r.suffix}"], ref[f"AR_{r.suffix}"] = stats[3], stats[9]
    return ref


# ---- the protocols ---------------------------------------------------------------------------


def test_protocol_names_and_buckets():
    assert METRIC_NAMES == (
        "AP",
        "AP50",
        "AP75",
        "AP_small",
        "AP_medium",
        "AP_large",
        "AR1",
        "AR10",
        "AR100",
        "AR_small",
        "AR_medium",
        "AR_large",
    )
    tiny = AREA_RANGES["tiny"]
    assert tiny.metric_names == (
        "AP",
        "AP50",
        "AP75",
        "AP_vt",
        "AP_t",
        "AP_s",
        "AP_m",
        "AR1",
        "AR100",
        "AR1500",
        "AR_vt",
        "AR_t",
        "AR_s",
        "AR_m",
    )
    # AI-TOD's evaluation code: all, very tiny, tiny, small, medium (open above); 1/100/1500 dets
    assert tiny.area_rng == [[0, 1e10], [0, 64], [64, 256], [256, 1024], [1024, 1e10]]
    assert tiny.area_rng_lbl == ["all", "verytiny", "tiny", "small", "medium"]
    assert tiny.max_dets == (1, 100, 1500)
    assert AREA_RANGES["coco"].area_rng == [[0, 1e10], [0, 1024], [1024, 9216], [9216, 1e10]]
    assert set(METRIC_NAMES) | set(tiny.metric_names) == set(ALL_METRIC_NAMES)


def test_coco_protocol_equals_summarize_exactly():
    coco = _synthetic_gt()
    dets = _detections(coco)
    m = coco_metrics(coco, dets, area_ranges="coco")
    # the caller's records are left as they were (pycocotools' loadRes adds fields to its input)
    assert all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in dets)
    ref = _summarize(coco, dets, None, (1, 10, 100))
    assert all(v >= 0 for v in ref)  # every bucket has boxes: no -1 hides a difference
    assert [m[k] for k in METRIC_NAMES] == ref  # bit for bit
    assert m["area_ranges"] == "coco" and m["num_detections"] == len(dets)


def test_coco_protocol_equals_summarize_on_the_real_ground_truth(aerial_cars_kit):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(os.path.join(aerial_cars_kit, "val.json"))
    dets = _detections(coco, seed=3)
    m = coco_metrics(coco, dets)
    ref = _summarize(coco, dets, None, (1, 10, 100))
    assert [m[k] for k in METRIC_NAMES] == ref
    assert m["AP_large"] == -1.0  # no large car in the set


def test_tiny_protocol_equals_pycocotools_bucket_by_bucket():
    coco = _synthetic_gt(seed=5)
    dets = _detections(coco, seed=6)
    m = coco_metrics(coco, dets, area_ranges="tiny")
    ref = _tiny_reference(coco, dets)
    assert all(ref[k] >= 0 for k in ref)
    assert {k: m[k] for k in ref} == ref
    assert set(ref) == set(AREA_RANGES["tiny"].metric_names)
    assert set(m["per_class_AP_vt"]) == {"car", "bus", "van"}
    # the buckets partition the boxes: very tiny boxes found only by very tiny detections
    only_vt = [d for d in dets if d["bbox"][2] * d["bbox"][3] < 64]
    mv = coco_metrics(coco, only_vt, area_ranges="tiny")
    assert mv["AP_vt"] > 0 and mv["AP_s"] == 0 and mv["AP_m"] == 0


def test_perfect_detections_score_one_in_every_tiny_bucket():
    coco = _synthetic_gt()
    perfect = [
        {**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0}
        for a in coco.dataset["annotations"]
    ]
    m = coco_metrics(coco, perfect, area_ranges="tiny")
    assert all(m[k] == pytest.approx(1.0) for k in AREA_RANGES["tiny"].metric_names if k != "AR1")


def test_bad_protocol_and_metric_are_refused():
    with pytest.raises(SettingError, match="area_ranges"):
        area_protocol("visdrone")
    with pytest.raises(SettingError, match="area_ranges"):
        coco_metrics(_synthetic_gt(1), [], area_ranges="visdrone")
    with pytest.raises(SettingError, match=r"best_metric 'AP_vt'.*area_ranges coco"):
        check_metric("AP_vt", "coco")
    check_metric("AP_vt", "tiny")
    check_metric("AP_small", "coco")


def test_trainer_refuses_a_best_metric_of_another_protocol(tmp_path, capsys):
    argv = ["--best-metric", "AP_vt", "--output-dir", str(tmp_path / "run"), "--device", "cpu"]
    with pytest.raises(SystemExit) as exc:
        train_main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--best-metric 'AP_vt'" in err and "--area-ranges coco" in err
    assert not (tmp_path / "run").exists()  # refused before anything was made


# ---- a checkpoint on the real data, scored with the tiny protocol -----------------------------


@pytest.fixture(scope="module")
def tiny_run(aerial_cars_kit, tmp_path_factory):
    """A few steps of training on aerial-cars-kit, evaluated and selected with --area-ranges tiny
    --best-metric AP_s."""
    d, out = aerial_cars_kit, tmp_path_factory.mktemp("tiny") / "run"
    argv = ["--train-img", os.path.join(d, "images"), "--train-ann", os.path.join(d, "train.json")]
    argv += ["--val-img", os.path.join(d, "images"), "--val-ann", os.path.join(d, "val.json")]
    argv += ["--output-dir", str(out), "--mode", "lgf", "--backbone", "resnet18"]
    argv += ["--img-size", "128", "--epochs", "1", "--max-iters", "2", "--max-images", "4"]
    argv += ["--max-val-images", "4", "--batch-size", "2", "--workers", "0", "--no-progress"]
    argv += ["--score-thresh", "0", "--area-ranges", "tiny", "--best-metric", "AP_s"]
    summary = run(parse_args(argv))
    return {"summary": summary, "ckpt": str(out / "best.pt"), "data": d}


def test_trainer_evaluates_and_selects_with_the_tiny_protocol(tiny_run):
    s = tiny_run["summary"]
    assert s["best"]["name"] == "AP_s" and s["best"]["value"] == s["metrics"]["AP_s"]
    assert s["metrics"]["area_ranges"] == "tiny"
    assert set(AREA_RANGES["tiny"].metric_names) <= set(s["metrics"])
    assert "AP_small" not in s["metrics"]


def test_evaluate_cli_tiny_prints_the_tiny_metrics_and_writes_rescorable_detections(
    tiny_run, tmp_path, capsys
):
    d = tiny_run["data"]
    js = tmp_path / "metrics.json"
    argv = [tiny_run["ckpt"], "--val-img", os.path.join(d, "images")]
    argv += ["--val-ann", os.path.join(d, "val.json"), "--max-images", "4", "--batch-size", "2"]
    assert eval_main(argv + ["--area-ranges", "tiny", "--output-json", str(js)]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.index("\n{") + 1 :])
    for key in ("AP_vt", "AP_t", "AP_s", "AP_m", "AR1500"):
        assert key in printed and f"   {key}\n" in out  # in the JSON and the summary table
    # aerial-cars-kit's val boxes are all 16-32 px: nothing very tiny or tiny to find
    assert printed["AP_vt"] == -1.0 and printed["AP_t"] == -1.0 and printed["AP_s"] >= 0.0
    assert json.loads(js.read_text()) == printed

    # the detections file sits next to the metrics and is COCO results that pycocotools loads
    det_path = tmp_path / "metrics.detections.json"
    assert printed["detections"] == str(det_path)
    records = json.loads(det_path.read_text())
    assert len(records) == printed["num_detections"] > 0
    assert set(records[0]) == {"image_id", "category_id", "bbox", "score"}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(os.path.join(d, "val.json"))
        loaded = gt.loadRes(str(det_path))
    assert {r["category_id"] for r in records} <= set(gt.getCatIds())
    # boxes in the original image's pixels: inside the (1284 x 377 ...) images, not the 128 px input
    sizes = {i: (gt.imgs[i]["width"], gt.imgs[i]["height"]) for i in gt.imgs}
    assert max(r["bbox"][0] + r["bbox"][2] for r in records) > 128
    assert all(r["bbox"][0] + r["bbox"][2] <= sizes[r["image_id"]][0] + 0.01 for r in records)
    assert len(loaded.anns) == len(records)

    # re-scored from the file: the same metrics; and each number is pycocotools' own
    ids = sorted(gt.getImgIds())[:4]
    again = coco_metrics(gt, records, image_ids=ids, area_ranges="tiny")
    names = AREA_RANGES["tiny"].metric_names
    assert {k: again[k] for k in names} == {k: printed[k] for k in names}
    assert {k: printed[k] for k in names} == _tiny_reference(gt, records, ids)


def test_evaluate_cli_coco_default_and_explicit_detections_path(tiny_run, tmp_path, capsys):
    d = tiny_run["data"]
    det = tmp_path / "sub" / "dets.json"
    argv = [tiny_run["ckpt"], "--val-img", os.path.join(d, "images")]
    argv += ["--val-ann", os.path.join(d, "val.json"), "--max-images", "2", "--quiet"]
    assert eval_main(argv + ["--detections-json", str(det)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["area_ranges"] == "coco" and set(METRIC_NAMES) <= set(printed)
    assert printed["detections"] == str(det) and len(json.loads(det.read_text())) > 0
    with pytest.raises(SystemExit):  # argparse refuses an unknown protocol
        eval_main(argv + ["--area-ranges", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
