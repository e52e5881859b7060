"""The evaluation report: a printed table, JSON, CSV and a bar chart PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..data.records import atomic_open, write_json
from .metrics import REWARD_SUMMARY
from .paper import canonical_dataset, paper_figures

COLUMNS = ("balanced_accuracy", "normal_accuracy", "anomaly_accuracy", "overkill", "miss", "n", "unparsed")


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(report: dict) -> str:
    header = ["dataset", *COLUMNS]
    rows = [[name, *(_cell(scores[c]) for c in COLUMNS)] for name, scores in report["datasets"].items()]
    rows.append(["average", _cell(report["average_balanced_accuracy"]), *([""] * (len(COLUMNS) - 1))])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    ]
    notes = [f"{name}: {s['note']}" for name, s in report["datasets"].items() if s.get("note")]
    return "\n".join(lines + notes + reward_lines(report))


def reward_lines(report: dict) -> list[str]:
    """The reward's view of the predictions, and which scorer gave it."""
    if "mean_reward" not in report:
        return []
    scorer = report.get("scorer") or {}
    values = "  ".join(f"{name}={_cell(report.get(name))}" for name in REWARD_SUMMARY)
    return [f"reward ({scorer.get('preset', '?')} preset, scorer {scorer.get('digest', '?')}): {values}"]


def write_csv(report: dict, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", *COLUMNS])
    for name, scores in report["datasets"].items():
        writer.writerow([name, *("" if scores[c] is None else scores[c] for c in COLUMNS)])
    average = report["average_balanced_accuracy"]
    writer.writerow(["average", "" if average is None else average])
    with atomic_open(path) as out:
        out.write(buffer.getvalue())


def draw_chart(report: dict, path: Path, backbone: str | None = None, shots: int = 0, title: str = "") -> None:
    """Bars of balanced accuracy per dataset, beside the paper's figures when known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["datasets"])
    ours = [report["datasets"][n]["balanced_accuracy"] or 0.0 for n in names]
    paper = paper_figures(backbone, shots)
    theirs = [paper.get(canonical_dataset(n) or "", None) for n in names]
    figure, axes = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 2), 3.6))
    positions = range(len(names))
    width = 0.38 if any(v is not None for v in theirs) else 0.6
    axes.bar([p - width / 2 if width < 0.6 else p for p in positions], ours, width, label="this run")
    if width < 0.6:
        axes.bar(
            [p + width / 2 for p in positions], [v or 0.0 for v in theirs], width, label=f"paper, IAD-R1 ({backbone})"
        )
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    axes.set_xticks(list(positions), names, rotation=20)
    axes.set_ylim(0, 1)
    axes.set_ylabel("balanced accuracy")
    axes.set_title(title or f"{shots}-shot balanced accuracy")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temp, dpi=120)
    plt.close(figure)
    temp.replace(path)


def write_report(report: dict, json_path: Path, backbone: str | None = None, shots: int = 0) -> dict[str, Path]:
    """JSON at `json_path`, with CSV and PNG beside it; returns the paths."""
    json_path = Path(json_path)
    csv_path, png_path = json_path.with_suffix(".csv"), json_path.with_suffix(".png")
    write_json(report, json_path)
    write_csv(report, csv_path)
    draw_chart(report, png_path, backbone, shots)
    return {"json": json_path, "csv": csv_path, "png": png_path}
