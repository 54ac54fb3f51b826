"""The curation report: an HTML page naming every reason, with a contact sheet per reason."""

from __future__ import annotations

from pipeline.core.config import load_params
from pipeline.stages import report
from tests.helpers import crop_manifest


def test_the_report_lists_every_reason_and_counts_it(tmp_path):
    data = tmp_path / "data"
    df = crop_manifest(data, classes=2, products=4, per_product=2)
    df.loc[0, "excluded_reason"] = "certificate"
    df.loc[1, "excluded_reason"] = "hand"
    df.loc[2, ["needs_review", "review_reason"]] = [True, "crop_cut_by_border;hand"]
    counts, m = report.run(df, load_params(None), store_root=data / "store", crops_dir=data / "crops",
                           out_dir=data / "report")
    by = dict(zip(counts["reason"], counts["images"], strict=True))
    assert by["certificate"] == 1 and by["hand"] == 1 and by["(in dataset)"] == len(df) - 2
    assert by["review:crop_cut_by_border"] == 1 and by["review:hand"] == 1
    assert m["needs_review"] == 1
    html = (data / "report" / "index.html").read_text()
    for reason in ("certificate", "hand", "crop_cut_by_border"):
        assert reason in html
    sheets = sorted(p.name for p in (data / "report").glob("sheet_*.png"))
    assert any("certificate" in s for s in sheets) and any("cut_by_border" in s for s in sheets)
    # missing source files (no image store here) are drawn as placeholders, not errors
    assert (data / "report" / "crops.png").exists()
