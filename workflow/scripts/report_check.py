"""Check results/report.html in a headless browser: every table and plot is in it and renders.

`make report-check` (or `python workflow/scripts/report_check.py results/report.html`):

1. every table (`results/tables/*.html`) and plot (`results/plots/*.png`) on disk is embedded in the
   report (Snakemake's report keeps its results as data URIs in `<script id="results">`), under a
   category, and the report embeds no table without its HTML rendering;
2. headless Chromium opens the report and its JavaScript app renders every category name (an app
   that fails to start leaves an empty page);
3. each embedded table, decoded from the report, renders in Chromium as a table with a caption and
   rows; each embedded plot decodes to a non-blank PNG;
4. a gallery page of everything the report embeds (tables and plots, decoded from the report) is
   screenshotted to `<out>/gallery.png`, with `<out>/landing.png` of the report itself, for a
   person to look at.

Exits 1 naming every problem; 2 when no Chromium is found (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--virtual-time-budget=10000")


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _script_json(report: str, script_id: str):
    """The object assigned in `<script id="...">var x = {...};` of Snakemake's report."""
    match = re.search(rf'<script id="{script_id}">\s*var \w+ = (.*?);?\s*</script>', report, re.S)
    if not match:
        raise ValueError(f'no <script id="{script_id}"> in the report (not a Snakemake report?)')
    return json.loads(match.group(1))


def embedded_results(report: str) -> dict[str, dict]:
    """path -> entry (name, labels, data_uri, ...) of every result the report embeds."""
    return _script_json(report, "results")


def decode(entry: dict) -> bytes:
    header, _, payload = entry["data_uri"].partition(",")
    return base64.b64decode(payload) if header.endswith(";base64") else payload.encode()


def expected_files(results_dir: Path) -> list[str]:
    """Tables and plots on disk that the report must show (as paths the report uses)."""
    found = sorted(results_dir.glob("tables/*.html")) + sorted(results_dir.glob("plots/*.png"))
    return [f"{results_dir.name}/{p.relative_to(results_dir)}" for p in found]


def check_embedded(results: dict, expected: list[str]) -> list[str]:
    problems = [f"{path}: on disk but not in the report" for path in expected if path not in results]
    tables = {p for p in results if p.startswith("results/tables/")}
    for path in sorted(tables):
        stem = path.rsplit(".", 1)[0]
        if not path.endswith(".html") and f"{stem}.html" not in results:
            problems.append(f"{path}: in the report without its HTML rendering ({stem}.html)")
    for path, entry in results.items():
        if not entry.get("data_uri"):
            problems.append(f"{path}: in the report without its content (no data URI)")
    return problems


def run_browser(browser: str, *args: str, timeout: int = 120) -> str:
    result = subprocess.run([browser, *BROWSER_FLAGS, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{browser} {' '.join(args)} failed: {result.stderr[-800:]}")
    return result.stdout


def rendered_text(dom: str) -> str:
    """Visible text of a dumped DOM (scripts and styles removed)."""
    dom = re.sub(r"<(script|style|svg)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


def check_landing(browser: str, report: Path, categories: list[str]) -> list[str]:
    text = rendered_text(run_browser(browser, "--dump-dom", report.resolve().as_uri()))
    return [f"{report}: category {name!r} not rendered by the report's app" for name in categories
            if name not in text]


def check_table(browser: str, path: str, page: Path) -> list[str]:
    dom = run_browser(browser, "--dump-dom", page.resolve().as_uri())
    rows = len(re.findall(r"<tr\b", dom))
    problems = []
    if "<caption>" not in dom:
        problems.append(f"{path}: rendered without a caption")
    if rows < 2:
        problems.append(f"{path}: rendered with {rows} table rows (header + at least one expected)")
    return problems


def check_plot(path: str, data: bytes) -> list[str]:
    from io import BytesIO

    from PIL import Image

    try:
        image = Image.open(BytesIO(data)).convert("L")
    except Exception as err:  # noqa: BLE001 (any decoding failure is the finding)
        return [f"{path}: does not decode as an image ({err})"]
    low, high = image.getextrema()
    if high - low < 32:
        return [f"{path}: blank image ({image.size[0]}x{image.size[1]}, grey levels {low}-{high})"]
    return []


def write_gallery(results: dict, folder: Path) -> Path:
    """One page with every embedded table (iframe) and plot (img), decoded from the report."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><style>body{font-family:sans-serif}"
             "iframe{width:1500px;border:1px solid #ccc} img{max-width:1500px} h3{margin:14px 0 4px}"
             "</style></head><body>"]
    for index, (path, entry) in enumerate(sorted(results.items())):
        name = Path(path).name
        if path.endswith(".html") and path.startswith("results/tables/"):
            local = folder / f"item{index}.html"
            local.write_bytes(decode(entry))
            parts.append(f"<h3>{html.escape(path)}</h3><iframe src='{local.name}' height='420'></iframe>")
        elif name.endswith(".png"):
            parts.append(f"<h3>{html.escape(path)}</h3><img src='{entry['data_uri']}'>")
    parts.append("</body></html>")
    gallery = folder / "gallery.html"
    gallery.write_text("\n".join(parts))
    return gallery


def check_report(report: Path, out: Path, browser: str) -> list[str]:
    text = report.read_text(errors="replace")
    results = embedded_results(text)
    categories = list(_script_json(text, "categories"))
    problems = check_embedded(results, expected_files(report.parent))
    problems += check_landing(browser, report, categories)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for path, entry in sorted(results.items()):
            if path.startswith("results/tables/") and path.endswith(".html"):
                page = Path(tmp) / Path(path).name
                page.write_bytes(decode(entry))
                problems += check_table(browser, path, page)
            elif path.endswith(".png"):
                problems += check_plot(path, decode(entry))
        gallery = write_gallery(results, out)
        height = 480 * len(results) + 400
        run_browser(browser, f"--screenshot={(out / 'gallery.png').resolve()}", f"--window-size=1600,{height}",
                    gallery.resolve().as_uri())
        run_browser(browser, f"--screenshot={(out / 'landing.png').resolve()}", "--window-size=1400,900",
                    report.resolve().as_uri())
    n_tables = sum(p.startswith("results/tables/") and p.endswith(".html") for p in results)
    n_plots = sum(p.endswith(".png") for p in results)
    print(f"{report}: {n_tables} tables (HTML) and {n_plots} plots (PNG) embedded, {len(categories)} categories; "
          f"screenshots in {out}/")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", nargs="?", default="results/report.html")
    parser.add_argument("--out", default="results/report-check", help="folder for the screenshots")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print(f"no headless browser found ({', '.join(BROWSERS)}): apt-get install chromium", file=sys.stderr)
        return 2
    report = Path(args.report)
    if not report.is_file():
        print(f"{report}: no report (run `make reproduce` first)", file=sys.stderr)
        return 1
    problems = check_report(report, Path(args.out), browser)
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    print("report check: " + ("passed" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
