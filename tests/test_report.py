"""The report over small real runs: tiny digits MLPs trained and attacked with the package's own API."""
from __future__ import annotations

import base64
import html.parser
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from advrobust import report
from advrobust.cli import report as report_cli
from advrobust.errors import UserError
from advrobust.cli._common import run_main
from advrobust.runs import commit_results, load_npz

WIDTHS = (8, 32)
DATA = {"name": "digits", "n": 30, "n_test": 30, "seed": 0}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """Two trained MLPs (widths 8, 32; 30 digits), attacked in l2 (fmn, ddn; train and test) and linf
    (fmn; test). Only mlp32 gets certified bounds (l2 test) and Lipschitz estimates (l2)."""
    import torch

    from advrobust.cli import attack, lipschitz
    from advrobust.train import TrainConfig, train_run

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    for w in WIDTHS:
        out = root / f"mlp{w}"
        train_run(out, data_kwargs=dict(DATA), model_spec={"family": "mlp", "width": w, "depth": 1},
                  config=TrainConfig(epochs=300, seed=0, device="cpu"), command="pytest", progress=False)
        common = ["--n", "30", "--steps", "20", "--quiet", "--random-checks", "0", "--device", "cpu"]
        for split in ("train", "test"):
            extra = ["--certify", "crown"] if (w == 32 and split == "test") else []
            assert attack.main([str(out), "--split", split, "--norm", "l2", "--attacks", "fmn,ddn"] + common + extra) == 0
        assert attack.main([str(out), "--split", "test", "--norm", "linf", "--attacks", "fmn"] + common) == 0
    assert lipschitz.main([str(root / "mlp32"), "--norm", "l2", "--ascent-steps", "3", "--ascent-points", "4",
                           "--segments", "8"]) == 0
    return root


@pytest.fixture(scope="module")
def built(runs_root, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("report")
    res = report.build_report([runs_root], out, title="test report", bootstrap=50)
    res["out_path"] = out
    return res


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _png_ok(data: bytes) -> tuple[int, int]:
    from PIL import Image

    Image.open(io.BytesIO(data)).verify()
    im = Image.open(io.BytesIO(data))
    return im.size


# --------------------------------------------------------------------------- the files
def test_html_is_self_contained_and_images_decode(built):
    text = Path(built["html"]).read_text(encoding="utf-8")
    p = _Collector()
    p.feed(text)
    p.close()
    tags = [t for t, _ in p.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    assert "@import" not in text and "url(" not in text  # no external styles or fonts
    imgs = [a["src"] for t, a in p.tags if t == "img"]
    assert len(imgs) == len(built["figures"]) >= 10
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        w, h = _png_ok(base64.b64decode(src.split(",", 1)[1], validate=True))
        assert w > 200 and h > 100
    for t, a in p.tags:  # nothing fetched from anywhere
        for key in ("src", "href"):
            assert not str(a.get(key, "")).startswith(("http:", "https:", "//")), (t, a)


def test_markdown_links_pngs_and_pdfs(built):
    out = built["out_path"]
    md = Path(built["markdown"]).read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"{name}.png" for name in built["figures"])
    for link in links:
        _png_ok((out / link).read_bytes())
    for name, meta in built["figures"].items():
        assert (out / meta["pdf"]).read_bytes().startswith(b"%PDF"), name
    # the HTML and the Markdown hold the same sections and tables
    html_text = Path(built["html"]).read_text(encoding="utf-8")
    for heading in re.findall(r"^#{2,3} (.+)$", md, flags=re.M):
        assert html.escape(heading) in html_text
    assert md.count("\n|---") == html_text.count("<table>")


def test_figures_hold_the_runs_they_should(built):
    figs = built["figures"]
    both = sorted(f"mlp{w}" for w in WIDTHS)
    for split in ("train", "test"):
        f = figs[f"robust-accuracy-l2-{split}"]
        assert f["curves"] == 2 and sorted(f["runs"]) == both
    assert figs["robust-accuracy-l2-test"]["certified_curves"] == 1  # only mlp32 has CROWN bounds
    assert figs["robust-accuracy-l2-train"]["certified_curves"] == 0
    assert "robust-accuracy-linf-train" not in figs  # never attacked
    assert figs["robust-accuracy-linf-test"]["curves"] == 2
    assert figs["radii-l2"]["curves"] == 2 and figs["radii-l2"]["splits"] == ["train", "test"]
    assert figs["radii-l2"]["ylabel"] == "L2 radius (pixel units, [0,1] scale)"
    assert figs["robust-accuracy-l2-test"]["xlabel"].endswith("L2 radius (pixel units, [0,1] scale)")
    assert figs["radii-linf"]["splits"] == ["test"]
    sc = figs["scaling-radius-l2-vs-p"]
    assert sc["runs"] == both and sc["points"] == 4  # 2 runs x (train, test) medians
    assert sc["xscale"] == sc["yscale"] == "log"
    assert any(v.startswith("interpolation threshold") for v in sc["vlines"])
    assert "p = n·d = 1920" in sc["vlines"]  # n=30 digits of d=64
    assert figs["scaling-lipschitz-l2-vs-p"]["runs"] == ["mlp32"]
    a = figs["attacks-l2-test"]
    assert a["curves"] == 2 and a["attacks"] == ["fmn", "ddn"]
    assert figs["attacks-linf-test"]["attacks"] == ["fmn"]
    g = figs["gallery-l2-test"]
    assert g["curves"] == 2 and g["image"] and 2 <= g["samples"] <= 6


def test_missing_pieces_named_with_commands(built, runs_root):
    cmds = {m["command"] for m in built["missing"]}
    mlp8, mlp32 = runs_root / "mlp8", runs_root / "mlp32"
    assert f"python -m advrobust.lipschitz {mlp8} --norm l2" in cmds
    assert f"python -m advrobust.lipschitz {mlp32} --norm l2" not in cmds
    # a missing attack file: the run's own configuration (its linf test results: fmn, 30 points, 20 steps)
    assert f"python -m advrobust.attack {mlp8} --norm linf --split train --n 30 --steps 20 --attacks fmn --seed 0" in cmds
    # missing bounds on existing results: added to them, no attack reruns
    assert f"python -m advrobust.attack {mlp8} --norm l2 --split test --certify crown --bounds-only" in cmds
    assert not any(c and str(mlp32) in c and "--norm l2 --split test --certify" in c for c in cmds)
    assert not any(c and c.startswith("python -m advrobust.attack") and "--attacks" not in c and "--bounds-only" not in c
                   for c in cmds)
    whats = " ".join(m["what"] for m in built["missing"])
    assert "attacked without --certify" in whats and "never attacked" in whats and "certified@" not in whats
    md = Path(built["markdown"]).read_text(encoding="utf-8")
    for c in cmds - {None}:
        assert f"`{c}`" in md


def test_tables_match_the_result_files(built, runs_root):
    """The radius table's medians are the npz medians (so the tables show what is on disk)."""
    md = Path(built["markdown"]).read_text(encoding="utf-8")
    r = load_npz(runs_root / "mlp8" / "attack-l2-test.npz")["best_radius"]
    med = np.sort(r)[int(np.ceil(0.5 * r.size)) - 1]
    row = [ln for ln in md.splitlines() if ln.startswith("| digits mlp w8 | test | 30 |")][0]
    assert report.fmt_value(float(med)) in [c.strip() for c in row.split("|")]


# --------------------------------------------------------------------------- partial and broken inputs
def _copy_run(src: Path, dst: Path, *, results: bool) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if results or f.name in ("run.json", "model.pt"):
            shutil.copy(f, dst / f.name)
    return dst


def test_report_without_any_results(runs_root, tmp_path, capsys):
    run = _copy_run(runs_root / "mlp8", tmp_path / "bare", results=False)
    assert run_main(report_cli.main, [str(run), "--out", str(tmp_path / "out"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)  # the CLI's --json summary
    assert res["figures"] == {}
    cmds = {m["command"] for m in res["missing"]}
    assert f"python -m advrobust.attack {run} --norm l2 --split test" in cmds
    assert f"python -m advrobust.lipschitz {run} --norm l2" in cmds
    text = Path(res["html"]).read_text(encoding="utf-8")
    p = _Collector()
    p.feed(text)
    assert "Missing pieces" in text and "python -m advrobust.attack" in text


def test_bracket_violation_and_attack_flags_are_reported(runs_root, tmp_path):
    run = _copy_run(runs_root / "mlp32", tmp_path / "bad", results=True)
    f = run / "attack-l2-test.npz"
    arrays = load_npz(f)
    best = arrays["best_radius"]
    broken = np.flatnonzero(np.isfinite(best) & (best > 0))[:3]
    arrays["lower__crown"] = np.asarray(arrays["lower__crown"], dtype=np.float64).copy()
    arrays["lower__crown"][broken] = best[broken] * 1.5  # an unsound "certificate"
    # "exact" radii 20% below the attacks' best everywhere, except one impossible one above it
    exact = np.where(np.isfinite(best), best / 1.25, np.inf)
    exact[broken[0]] = best[broken[0]] * 2.0
    arrays["exact_radius"], arrays["exact_lower"] = exact, exact.copy()
    arrays["exact_status"] = np.zeros(best.shape, dtype=np.int64)
    info = json.loads((run / "attack-l2-test.json").read_text())
    info["flags"] = [{"name": "zero-gradients", "count": 4, "message": "4 samples had zero gradients"}]
    commit_results(run / "attack-l2-test", arrays, info)  # the pair rewritten as one unit (new checksum)
    res = report.build_report([run], tmp_path / "out", norms=["l2"], samples=0)
    by_name = {fl["name"]: fl for fl in res["flags"]}
    assert by_name["radius-below-certified"]["count"] == len(broken)
    assert by_name["radius-below-exact"]["count"] == 1
    assert res["figures"]["attacks-l2-test"]["exact"] is True
    # median radius/exact of the attack that is best on most points: 1.25 (the planted gap)
    md_rows = [ln.split("|") for ln in Path(res["markdown"]).read_text().splitlines() if ln.startswith("| digits mlp w32 | fmn |")]
    assert md_rows and [c.strip() for c in md_rows[0]][7] == "1.25"
    assert by_name["zero-gradients"]["count"] == 4 and by_name["zero-gradients"]["doc"] == "docs/attacks.md#zero-gradients"
    md = Path(res["markdown"]).read_text(encoding="utf-8")
    assert "radius-below-certified" in md and "4 samples had zero gradients" in md


def test_deterministic_output_and_config_same_as_keywords(runs_root, tmp_path):
    a = report.build_report([runs_root], tmp_path / "a", norms=["linf"], samples=0, bootstrap=20)
    config = report.ReportConfig(norms=("linf", "inf"), samples=0, bootstrap=20)
    assert config.norms == ("linf",)  # names, without repeats
    b = report.build_report([runs_root], tmp_path / "b", config)
    assert (tmp_path / "a" / "report.md").read_bytes() == (tmp_path / "b" / "report.md").read_bytes()
    assert Path(a["html"]).read_bytes() == Path(b["html"]).read_bytes()
    for name in a["figures"]:
        assert (tmp_path / "a" / f"{name}.pdf").read_bytes() == (tmp_path / "b" / f"{name}.pdf").read_bytes()


def test_cli_user_errors(tmp_path, capsys, runs_root):
    assert run_main(report_cli.main, [str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert run_main(report_cli.main, [str(runs_root / "mlp8"), "--out", str(tmp_path / "o"), "--norm", "l3"]) == 2
    assert "unknown norm" in capsys.readouterr().err
    assert run_main(report_cli.main, [str(runs_root / "mlp8")]) == 2  # --out is required
    for bad in ({"samples": -1}, {"bootstrap": -2}, {"norms": ("l3",)}):
        with pytest.raises(UserError):
            report.ReportConfig(**bad)
    with pytest.raises(TypeError, match="not both"):
        report.build_report([runs_root / "mlp8"], tmp_path / "o", report.ReportConfig(), title="x")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        report.build_report([runs_root / "mlp8"], tmp_path / "file")
    corrupt = _copy_run(runs_root / "mlp8", tmp_path / "corrupt", results=True)
    (corrupt / "attack-l2-test.npz").write_bytes(b"not a zip")
    assert run_main(report_cli.main, [str(corrupt), "--out", str(tmp_path / "o2")]) == 2
    assert "corrupt" in capsys.readouterr().err


# --------------------------------------------------------------------------- small pure pieces
def test_robust_accuracy_and_certified_lower():
    from advrobust.plots import robust_accuracy

    r = np.array([0.0, 0.5, np.inf])
    assert robust_accuracy(r, np.array([0.0, 0.49, 0.5, 10.0])).tolist() == [2 / 3, 2 / 3, 1 / 3, 1 / 3]
    arrays = {"lower__ibp": np.array([0.1, 0.2, np.nan]), "lower__crown": np.array([0.3, 0.1, np.nan]),
              "exact_radius": np.array([0.4, 0.9, 0.7]), "exact_status": np.array([0, 1, 0]),
              "pred": np.array([1, 1, 2]), "label": np.array([1, 1, 1])}
    assert report.certified_lower(arrays).tolist() == [0.4, 0.2, 0.0]  # misclassified -> 0
    assert report.certified_lower({"best_radius": r}) is None


# --------------------------------------------------------------------------- a real browser
def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_browser() is None, reason="no Chromium/Chrome found")
def test_headless_browser_shows_every_image(built, tmp_path):
    text = Path(built["html"]).read_text(encoding="utf-8")
    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "document.body.setAttribute('data-probe',im.length+':'+im.filter(i=>!i.complete||i.naturalWidth===0).length);"
             "});</script>")
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'data-probe="(\d+):(\d+)"', proc.stdout)
    assert m, proc.stderr[-2000:]
    total, broken = int(m.group(1)), int(m.group(2))
    assert total == len(built["figures"]) and broken == 0


def test_non_image_data_gets_bar_chart_gallery(tmp_path):
    """Synthetic (N, d) data: the gallery shows the perturbation per coordinate, not images."""
    from advrobust.cli import attack
    from advrobust.train import TrainConfig, train_run

    out = tmp_path / "g16"
    train_run(out, data_kwargs={"name": "gaussian", "n": 20, "n_test": 20, "dim": 16, "seed": 0},
              model_spec={"family": "mlp", "width": 8, "depth": 1}, config=TrainConfig(epochs=200, device="cpu"),
              command="pytest", progress=False)
    assert attack.main([str(out), "--split", "train", "--norm", "l2", "--attacks", "fmn", "--steps", "10", "--quiet",
                        "--random-checks", "0", "--device", "cpu"]) == 0
    res = report.build_report([out], tmp_path / "rep", samples=2, bootstrap=0)
    g = res["figures"]["gallery-l2-train"]
    assert g["image"] is False and g["runs"] == ["g16"] and 1 <= g["samples"] <= 2
    md = Path(res["markdown"]).read_text(encoding="utf-8")
    assert "Inputs are not images" in md
    assert res["figures"]["radii-l2"]["ylabel"] == "L2 radius (input units)"


def test_mixed_data_sets_one_series_per_group_and_both_galleries(runs_root, tmp_path):
    """An image run (digits) beside a vector run (gaussian): one scaling series and fit-table row per
    comparable group (never one slope across data sets), one gallery per kind of input."""
    from advrobust.cli import attack
    from advrobust.train import TrainConfig, train_run

    img = _copy_run(runs_root / "mlp8", tmp_path / "runs" / "mlp8", results=True)
    vec = tmp_path / "runs" / "g16"
    train_run(vec, data_kwargs={"name": "gaussian", "n": 20, "n_test": 20, "dim": 16, "seed": 0},
              model_spec={"family": "mlp", "width": 8, "depth": 1}, config=TrainConfig(epochs=200, device="cpu"),
              command="pytest", progress=False)
    for split in ("train", "test"):
        assert attack.main([str(vec), "--split", split, "--norm", "l2", "--attacks", "fmn", "--steps", "10",
                            "--quiet", "--random-checks", "0", "--device", "cpu"]) == 0
    res = report.build_report([img, vec], tmp_path / "rep", norms=["l2"], samples=2, bootstrap=0)
    figs = res["figures"]
    g_img, g_vec = figs["gallery-l2-test"], figs["gallery-l2-test-vectors"]
    assert g_img["image"] is True and g_img["runs"] == ["mlp8"]
    assert g_vec["image"] is False and g_vec["runs"] == ["g16"]
    # one data set per scaling figure: digits in the first p figure, the Gaussian runs in the second
    assert figs["scaling-radius-l2-vs-p"]["groups"] == ["digits n=30 d=64"]
    assert figs["scaling-radius-l2-vs-p-2"]["groups"] == ["gaussian n=20 d=16"]
    series = figs["scaling-radius-l2-vs-p"]["series"] + figs["scaling-radius-l2-vs-p-2"]["series"]
    by_group = {}
    for s in series:
        by_group.setdefault(s["group"], set()).update(s["runs"])
        assert s["label"].startswith(s["group"] + ": ")
    assert by_group == {"digits n=30 d=64": {"mlp8"}, "gaussian n=20 d=16": {"g16"}}
    labels = [s["label"] for s in series]
    assert len(labels) == len(set(labels)) <= 4  # per data set at most a test and a train median series
    assert {"digits n=30 d=64: median train radius", "gaussian n=20 d=16: median train radius"} <= set(labels)
    assert all(s["fit"] is None for s in series)  # one run per group: nothing to fit, nothing pooled
    md = Path(res["markdown"]).read_text(encoding="utf-8")
    assert "No fit for median l2 train radius (digits n=30 d=64) against p" in md
    assert "scaling-radius-l2-vs-n" not in figs and "scaling-radius-l2-vs-d" not in figs


# --------------------------------------------------------------------------- layout a reader can use
def test_figures_have_no_overlapping_text_no_legend_on_data_and_distinct_colours(built):
    """Measured through matplotlib's renderer at the saved size (plots.layout_problems, run by the report)."""
    for name, meta in built["figures"].items():
        assert meta["overlaps"] == [], (name, meta["overlaps"])
        assert meta["legend_over_axes"] == [], name
        if "colors" in meta:
            assert len(set(meta["colors"])) == len(meta["colors"]) == meta["curves"], name


def test_layout_check_catches_overlap_and_legend_on_data():
    from advrobust import plots

    _, plt = plots._mpl()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_title("a title that is long enough to run into its neighbour")
    ax.text(0.5, 1.02, "colliding", transform=ax.transAxes)
    ax.legend(loc="center")
    found = plots.layout_problems(fig)
    plots.close(fig)
    assert found["overlaps"] and found["legend_over_axes"] == ["a line"]


def test_sequential_colours_ordered_by_p_with_line_style_by_data_set():
    from matplotlib.colors import to_rgb

    from advrobust import plots

    keys = [("digits", p) for p in (5e4, 1e3, 1e5, 3e3, 2e4, 1e4, 7e3, 4e4, 9e4)] + [("sphere", 10.0 ** k) for k in range(9)]
    st = plots.sequential_styles(keys)
    assert len({s["color"] for s in st}) == len(keys)
    assert {s["linestyle"] for s in st[:9]} != {s["linestyle"] for s in st[9:]}
    for ds in ("digits", "sphere"):
        idx = sorted((i for i, k in enumerate(keys) if k[0] == ds), key=lambda i: keys[i][1])
        lum = [sum(to_rgb(st[i]["color"])) for i in idx]
        assert lum == sorted(lum, reverse=True)  # lighter for fewer parameters, darker for more


def test_spread_keeps_each_data_sets_smallest_and_largest():
    class R:
        def __init__(self, ds, p):
            self.meta = {"dataset": ds, "params": p}

    pool = [R("a", p) for p in range(10)] + [R("b", p) for p in range(10)]
    pick = report.spread(pool, 6)
    assert len(pick) == 6 and pick == sorted(pick, key=pool.index)
    for end in (pool[0], pool[9], pool[10], pool[19]):
        assert end in pick
    assert report.spread(pool[:5], 6) == pool[:5]


class _Tables(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.links, self.titles, self._row = [], [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append(0)
        elif tag == "tr":
            self._row = 0
        elif tag in ("td", "th") and self._row is not None:
            self._row += 1
            self.tables[-1] = max(self.tables[-1], self._row)
            if a.get("class") == "run":
                self.titles.append(a.get("title"))
        elif tag == "a":
            self.links.append(a.get("href"))


def test_tables_fit_short_labels_with_full_names_and_csv(built, runs_root):
    text = Path(built["html"]).read_text(encoding="utf-8")
    p = _Tables()
    p.feed(text)
    assert p.tables and max(p.tables) <= 11  # focused tables, not one 25-column table
    assert "overflow-x:auto" not in text.split("<style>")[1].split("</style>")[0].split("pre{")[0]
    assert set(p.titles) == {"mlp8", "mlp32"}  # every run cell's tooltip is the run's full name
    assert "comparison.csv" in p.links
    with open(built["out_path"] / "comparison.csv", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    assert {"run", "params", "l2_test_radius_median", "l2_lip_lower"} <= set(header)
    assert re.search(r'<td class="run" title="mlp8">digits mlp w8</td>', text)


def test_provenance_shows_the_min_width_search_time(runs_root, tmp_path):
    run = _copy_run(runs_root / "mlp8", tmp_path / "wmin", results=False)
    meta = json.loads((run / "run.json").read_text())
    meta["min_width_search"] = {"width": 8, "wall_time_s": 181.25, "tried": [2, 4, 8], "largest_failure": 4}
    (run / "run.json").write_text(json.dumps(meta))
    res = report.build_report([run], tmp_path / "out", samples=0)
    md = Path(res["markdown"]).read_text(encoding="utf-8")
    row = [ln for ln in md.splitlines() if ln.startswith("| digits mlp w8 (min) | wmin |")]
    assert row and "181" in row[0].split("|")[8] and row[0].split("|")[9].strip() == "3"


@pytest.mark.skipif(_browser() is None, reason="no Chromium/Chrome found")
def test_headless_browser_1400px_has_no_horizontal_scroll(built, tmp_path):
    text = Path(built["html"]).read_text(encoding="utf-8")
    probe = ("<script>window.addEventListener('load',()=>{const W=document.documentElement.clientWidth;"
             "const bad=[...document.querySelectorAll('table,figure,pre')].filter(e=>e.getBoundingClientRect().right>W"
             "||e.scrollWidth>e.clientWidth+4).length;"
             "document.body.setAttribute('data-probe',W+':'+document.documentElement.scrollWidth+':'+bad);});</script>")
    page = tmp_path / "probe.html"
    page.write_text(text.replace("</body>", probe + "</body>"), encoding="utf-8")
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1400,900",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'data-probe="(\d+):(\d+):(\d+)"', proc.stdout)
    assert m, proc.stderr[-2000:]
    viewport, scroll, bad = map(int, m.groups())
    assert scroll <= viewport and bad == 0
