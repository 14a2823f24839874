"""workflow/scripts/report_check.py (`make report-check`): the report-embedding checks on a
hand-made report, and the whole check in headless Chromium on a report of the DAG run with the
fake CLI (skipped, with the reason, where no Chromium is installed)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from wfhelpers import PROFILE, SCRIPTS, configure_workflow, copy_workflow, fake_cli_env, run_snakemake

sys.path.insert(0, str(SCRIPTS))
import report_check  # noqa: E402  (workflow/scripts/report_check.py)


def _entry(data: bytes, mime: str) -> dict:
    return {"name": "x", "data_uri": f"data:{mime};charset=utf8;base64,{base64.b64encode(data).decode()}"}


def _report(results: dict) -> str:
    return (f'<html><script id="results">\n    var results = {json.dumps(results)};\n    </script>'
            f'<script id="categories">\n    var categories = {{"1. Main": {{}}}};\n    </script></html>')


def test_embedded_results_and_what_is_missing(tmp_path):
    (tmp_path / "results" / "tables").mkdir(parents=True)
    (tmp_path / "results" / "plots").mkdir()
    for name in ("main_a.html", "ablation_a.html"):
        (tmp_path / "results" / "tables" / name).write_text("<table></table>")
    (tmp_path / "results" / "plots" / "scaling.png").write_bytes(b"png")
    results = {"results/tables/main_a.html": _entry(b"<table><caption>t</caption></table>", "text/html"),
               "results/tables/main_a.csv": _entry(b"a,b", "text/csv"),
               "results/tables/stride_a.csv": _entry(b"a,b", "text/csv"),
               "results/plots/scaling.png": {"name": "scaling.png", "data_uri": ""}}
    text = _report(results)
    parsed = report_check.embedded_results(text)
    assert report_check.decode(parsed["results/tables/main_a.html"]) == b"<table><caption>t</caption></table>"
    problems = report_check.check_embedded(parsed, report_check.expected_files(tmp_path / "results"))
    assert problems == ["results/tables/ablation_a.html: on disk but not in the report",
                        "results/tables/stride_a.csv: in the report without its HTML rendering "
                        "(results/tables/stride_a.html)",
                        "results/plots/scaling.png: in the report without its content (no data URI)"]
    with pytest.raises(ValueError, match='no <script id="results">'):
        report_check.embedded_results("<html></html>")


def test_blank_plot_is_a_problem(tmp_path):
    from io import BytesIO

    from PIL import Image

    def png(draw):
        image = Image.new("RGB", (60, 40), "white")
        if draw:
            image.paste((0, 0, 0), (10, 10, 30, 20))
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    assert report_check.check_plot("p.png", png(True)) == []
    assert "blank image" in report_check.check_plot("p.png", png(False))[0]
    assert "does not decode" in report_check.check_plot("p.png", b"not a png")[0]


@pytest.mark.slow
def test_report_of_the_dag_passes_in_headless_chromium(tmp_path):
    """The fake-CLI DAG writes the report in the same call (`--report-after-run`, as `make
    reproduce`) without Snakemake's 'coroutine ... never awaited' warnings; then the browser check
    finds every table and plot in it, rendered, and leaves the screenshots."""
    if report_check.find_browser() is None:
        pytest.skip("no headless Chromium installed (apt-get install chromium); make report-check needs one")
    workdir = copy_workflow(tmp_path / "wf", isolate_conf=True)
    configure_workflow(workdir, ["synth_tacos"], seeds=1)
    env = fake_cli_env(tmp_path)
    result = run_snakemake(workdir, "--cores", "2", "--report", "results/report.html", "--report-after-run",
                           env=env, profile=PROFILE)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "never awaited" not in result.stdout + result.stderr
    check = subprocess.run([sys.executable, str(SCRIPTS / "report_check.py"), "results/report.html", "--out",
                            "results/report-check"], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr
    # synth_tacos: main, ablation, stride, backbones + scaling exponents; recall, curves, ablation, scaling
    assert "5 tables (HTML) and 4 plots (PNG) embedded" in check.stdout
    for shot in ("gallery.png", "landing.png"):
        assert (workdir / "results" / "report-check" / shot).stat().st_size > 10_000
    # the check can fail: a table written after the report is not in it
    (workdir / "results" / "tables" / "extra_synth_tacos.html").write_text("<table></table>")
    again = subprocess.run([sys.executable, str(SCRIPTS / "report_check.py"), "results/report.html", "--out",
                            "results/report-check"], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1 and "extra_synth_tacos.html: on disk but not in the report" in again.stderr
