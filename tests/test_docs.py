"""The documentation: a README read in ten minutes, links that lead somewhere, benchmark tables that match the run.

The README keeps only what a user needs first; the rest lives in docs/ and bench/ (README.md, HISTORY.md).
"""

import glob
import json
import os
import re

from conftest import ROOT

README = ROOT / "README.md"
BENCH_README = ROOT / "bench" / "README.md"
DOCS = [README, BENCH_README, ROOT / "bench" / "HISTORY.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a "# comment" in a code block is not a heading
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def target_table(path):
    """The rows of the first `| Target | Goal | Measured | Met |` table in `path`, as lists of cells."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("| Target | Goal | Measured | Met |")
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def latest_results(kind=""):
    """`(stem, results)` of the newest `make bench` run (`DATE.json`), or of `DATE-<kind>.json`."""
    pattern = re.compile(r"^\d{4}-\d{2}-\d{2}" + (f"-{kind}" if kind else "") + r"\.json$")
    paths = [p for p in glob.glob(str(ROOT / "bench" / "results" / "*.json")) if pattern.match(os.path.basename(p))]
    path = max(paths, key=os.path.basename)
    with open(path) as f:
        return os.path.basename(path)[:-len(".json")], json.load(f)


def test_readme_is_read_in_ten_minutes():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move details to docs/ or bench/"


def test_the_moved_documents_exist_and_the_readme_links_each():
    readme = README.read_text(encoding="utf-8")
    for name in ("docs/design.md", "docs/serving.md", "docs/reliability.md", "docs/distributed.md",
                 "bench/README.md", "bench/HISTORY.md"):
        assert (ROOT / name).is_file(), name
        assert f"]({name}" in readme, name


def test_readme_names_both_test_commands_and_ci_runs_the_whole_suite():
    readme = README.read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme and "make test-fast" in readme
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == "make test"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'^PYTEST := \$\(BIN\)/python -m pytest .*-n auto', makefile, flags=re.M)
    assert re.search(r'^test: .*\n\t\$\(PYTEST\) tests$', makefile, flags=re.M)
    assert re.search(r'^test-fast: .*\n\t\$\(PYTEST\) -m "not slow" tests$', makefile, flags=re.M)


def test_relative_links_and_anchors_resolve():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_bench_readme_reports_the_latest_run():
    """bench/README.md's target table is the newest bench/results run: its date, commit, report and misses."""
    date, results = latest_results()
    text = BENCH_README.read_text(encoding="utf-8")
    commit = results["meta"]["code"]["commit"]
    assert f"Last run of {date} (on commit {commit[:7]})" in text
    assert f"`bench/results/{date}.md`" in text
    rows = target_table(BENCH_README)
    assert len(rows) >= 8 and all(len(r) == 4 for r in rows), rows
    # The table also holds the targets of the newest `make bench-defaults` run (bench/defaults.py), of
    # the newest `python -m bench.startup` run and of the newest `python -m bench.streaming` run.
    targets = list(results["targets"])
    for kind in ("defaults", "startup", "streaming"):
        stem, extra = latest_results(kind)
        assert f"`bench/results/{stem}.md`" in text
        targets += extra["targets"]
    missed = sorted(t["name"] for t in targets if t["met"] is False)
    assert sum(r[3].startswith("**no**") for r in rows) == len(missed), (missed, rows)
    assert all(r[3].startswith(("yes", "**no**")) for r in rows), rows


def test_readme_target_table_agrees_with_the_bench_readme():
    """The README's one table: the same targets, goals and verdicts as bench/README.md, from the same run."""
    date, results = latest_results()
    readme = README.read_text(encoding="utf-8")
    assert f"({date}, commit {results['meta']['code']['commit'][:7]}" in readme
    ours, theirs = target_table(README), target_table(BENCH_README)
    assert [r[1] for r in ours] == [r[1].replace("200,000", "200k") for r in theirs]  # the goals, row by row
    assert [r[3].startswith("yes") for r in ours] == [r[3].startswith("yes") for r in theirs]  # the verdicts
