"""The visual evaluation report: one self-contained HTML page (images as data URIs) that
shows, item by item, the image with the grid, the label's and the predicted cells, the
completion and the reward's reasons, with a summary header and filters by outcome that
work offline (a few lines of JavaScript, no server, nothing fetched).

    iadr1-eval report preds.jsonl --data test/records.jsonl --out report.html [--limit N]
"""

# ruff: noqa: E501  (HTML and CSS templates read best one element per line)
from __future__ import annotations

import html
import logging
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from rewards import Scorer

from ..data.records import Record, atomic_open, iter_records
from .answers import extract_prediction, prediction_rows
from .grid_image import LABEL_COLOUR, PREDICTED_COLOUR, grid_picture
from .metrics import score_metrics, score_predictions, summarise
from .outcomes import FLAWS, OUTCOMES, ReportItem, flaws_of, outcome_of, sample_items

logger = logging.getLogger(__name__)

PARTS = ("consistency", "accuracy", "location", "type")
_TAG = re.compile(r"(</?(?:think|location|type|answer)>)")


# ------------------------------------------------------------------ items
def records_by_id(data: str | Path | Iterable[Record], image_root: str | Path | None = None) -> dict[str, Record]:
    """The test records keyed by id: a records JSONL, an MMAD question JSON (its image paths
    under `image_root`, as for `iadr1-eval run`), or records."""
    if isinstance(data, str | Path):
        path = Path(data)
        if path.suffix == ".json":
            from ..data.converters import from_mmad

            data = from_mmad(path, image_root)
        else:
            data = iter_records(path)
    return {record.id: record for record in data}


def build_items(rows: list[dict], records: dict[str, Record], scorer: Scorer) -> list[ReportItem]:
    """Each prediction scored, classified and joined to its record's image."""
    unknown = [str(row.get("id")) for row in rows if str(row.get("id")) not in records]
    if unknown:
        raise ValueError(
            f"{len(unknown)} of {len(rows)} predictions have no record with their id in --data "
            f"(e.g. {unknown[0]!r}): give the records the predictions were generated from"
        )
    items = []
    for row in rows:
        record = records[str(row["id"])]
        score = scorer.score(row["output"], row["label"])
        parsed = scorer.parse_label(row["label"])
        predicted = extract_prediction(row["output"])
        items.append(
            ReportItem(
                id=str(row["id"]),
                dataset=row.get("dataset") or record.dataset,
                label=row["label"],
                output=row["output"] or "",
                score=score,
                predicted=predicted,
                metrics=score_metrics(score, parsed),
                outcome=outcome_of(row["label"]["answer"], predicted),
                flaws=flaws_of(score, bool(parsed.type)),
                image=record.query_image,
                category=str(row["label"].get("category") or ""),
            )
        )
    return items


def summary_of(items: list[ReportItem], scorer: Scorer) -> dict:
    """What the header shows, over every item (not only those on the page), from the
    items' scores and answers: nothing is scored or parsed twice."""
    accuracy = score_predictions((item.dataset, item.label["answer"], item.predicted) for item in items)
    n = len(items) or 1
    return {
        "balanced_accuracy": accuracy["average_balanced_accuracy"],
        "datasets": {name: d["balanced_accuracy"] for name, d in accuracy["datasets"].items()},
        "confusion": Counter((item.label["answer"], item.predicted) for item in items),
        "parts": {part: sum(getattr(i.score, part) for i in items) / n for part in (*PARTS, "total")},
        "counts": Counter(key for item in items for key in item.keys),
        "reward": summarise([item.metrics for item in items]),
        "scorer": scorer.describe(),
        "grid": scorer.grid,
        "n": len(items),
    }


# ------------------------------------------------------------------ HTML
def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def completion_html(text: str) -> str:
    """The completion, escaped, with its tags set apart."""
    return "".join(
        f'<span class="tag">{html.escape(part)}</span>' if _TAG.fullmatch(part) else html.escape(part)
        for part in _TAG.split(text)
    )


def _cells(cells: Iterable[int]) -> str:
    return ", ".join(str(c) for c in sorted(cells)) or "none"


def _part(score, part: str) -> str:
    """A part's value, or a dash where the gate kept it from being scored."""
    if part in ("location", "type") and not score.gated:
        return '<span class="muted" title="not scored: no anomaly detected">–</span>'
    return f"{getattr(score, part):.2f}"


def item_html(item: ReportItem, grid: tuple[int, int]) -> str:
    score = item.score
    picture, note = grid_picture(item.image, grid, score.label_cells, score.predicted_cells)
    label = item.label
    gold = f"{label['answer']}" + (f", {html.escape(str(label.get('type')))}" if label.get("type") else "")
    badges = "".join(f'<span class="badge {key}">{html.escape({**OUTCOMES, **FLAWS}[key])}</span>' for key in item.keys)
    parts = (
        "".join(f"<tr><th>{part}</th><td>{_part(score, part)}</td></tr>" for part in PARTS)
        + f"<tr class='total'><th>total</th><td>{score.total:.2f} / {score.max_total:.0f}</td></tr>"
    )
    gate = "" if score.gated else '<p class="muted">location and type not scored: no anomaly detected</p>'
    return f"""<section class="item {" ".join(item.keys)}" id="item-{html.escape(item.id)}">
<img src="{picture}" alt="item {html.escape(item.id)}" loading="lazy" decoding="async" width="192">
<div class="body">
<h3>{html.escape(item.id)} <span class="muted">{html.escape(item.dataset)}{" / " + html.escape(item.category) if item.category else ""}</span></h3>
<div class="badges">{badges}</div>
<p>label: <b>{gold}</b>; cells: label <b class="label-cells">{_cells(score.label_cells)}</b>,
predicted <b class="predicted-cells">{_cells(score.predicted_cells)}</b>;
type rule: <b class="rule">{html.escape(score.type_rule or "none")}</b></p>
<table class="parts">{parts}</table>{gate}
{f'<p class="note">{html.escape(note)}</p>' if note else ""}
<details><summary>completion ({len(item.output)} characters)</summary><pre>{completion_html(item.output)}</pre></details>
</div>
</section>"""


def header_html(summary: dict, shown: list[ReportItem], sampled: bool) -> str:
    confusion = summary["confusion"]
    rows = "".join(
        f"<tr><th>label {gold}</th>"
        + "".join(f"<td>{confusion.get((gold, predicted), 0)}</td>" for predicted in ("yes", "no", None))
        + "</tr>"
        for gold in ("yes", "no")
    )
    parts = "".join(f"<td>{_number(summary['parts'][p])}</td>" for p in (*PARTS, "total"))
    reward = summary["reward"]
    datasets = ", ".join(f"{html.escape(name)} {_number(value)}" for name, value in summary["datasets"].items())
    scorer = summary["scorer"]
    shown_counts = Counter(key for item in shown for key in item.keys)
    filters = "".join(
        f'<button data-filter="{key}">{html.escape(name)} <span class="count">{shown_counts.get(key, 0)}'
        f"{'' if not sampled else ' of ' + str(summary['counts'].get(key, 0))}</span></button>"
        for key, name in {**OUTCOMES, **FLAWS}.items()
    )
    sample_note = (
        f"showing {len(shown)} of {summary['n']} items, sampled so that every outcome is represented"
        if sampled
        else f"{summary['n']} items"
    )
    return f"""<header>
<h1>IAD-R1 evaluation</h1>
<p class="muted">{sample_note}; scored by the {html.escape(scorer.get("preset", "?"))} preset,
scorer {html.escape(scorer.get("digest", "?"))}</p>
<div class="summary">
<div><h2>balanced accuracy</h2><p class="big" id="balanced-accuracy">{_number(summary["balanced_accuracy"])}</p>
<p class="muted">{datasets}</p></div>
<div><h2>answers</h2><table class="confusion"><tr><th></th><th>said yes</th><th>said no</th><th>no answer</th></tr>{rows}</table></div>
<div><h2>reward parts, mean over all items</h2><table class="means"><tr><th>format</th><th>answer</th><th>location</th><th>type</th>
<th>total</th></tr><tr>{parts}</tr></table>
<p>on anomalous items: location accuracy <b>{_number(reward["location_accuracy"])}</b>,
type score <b>{_number(reward["type_score"])}</b>, right kind of defect <b>{_number(reward["type_category_accuracy"])}</b></p></div>
</div>
<p class="legend"><span class="swatch label"></span> label's cells
<span class="swatch predicted"></span> predicted cells (grid {summary["grid"][0]}×{summary["grid"][1]})</p>
</header>
<nav class="filters"><button data-filter="all" class="on">all <span class="count">{len(shown)}</span></button>{filters}</nav>"""


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#fff;padding:12px 20px 0;border-bottom:1px solid #dde1e7}
nav.filters{position:sticky;top:0;z-index:1;background:#fff;padding:6px 20px;border-bottom:1px solid #dde1e7}
h1{font-size:20px;margin:0}h2{font-size:13px;margin:0 0 4px;color:#556}h3{font-size:14px;margin:0 0 4px}
.muted{color:#6b7280}.big{font-size:28px;font-weight:600;margin:0}
.summary{display:flex;gap:32px;flex-wrap:wrap;margin:8px 0}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #eee}
th{font-weight:500;color:#445}
.filters button{margin:2px;padding:4px 10px;border:1px solid #c5cbd3;border-radius:14px;background:#fff;cursor:pointer}
.filters button.on{background:#1d2330;color:#fff}.count{opacity:.7}
.legend .swatch{display:inline-block;width:14px;height:14px;vertical-align:middle;margin:0 4px 0 12px}
.swatch.label{border:3px solid LABEL}.swatch.predicted{background:repeating-linear-gradient(45deg,PREDICTED 0 2px,transparent 2px 6px);border:2px solid PREDICTED}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px;padding:16px 20px}
.item{display:flex;gap:12px;background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px;
content-visibility:auto;contain-intrinsic-size:auto 240px}
.item img{width:192px;height:auto;image-rendering:pixelated;border-radius:4px;flex:none}
.body{min-width:0;flex:1}.body p{margin:4px 0}
.badge{display:inline-block;font-size:12px;padding:1px 8px;border-radius:10px;margin-right:4px;background:#e5e7eb}
.badge.tp,.badge.tn{background:#d1fae5}.badge.fp,.badge.fn,.badge.no-answer{background:#fee2e2}
.badge.location-wrong,.badge.type-wrong,.badge.format-broken{background:#fef3c7}
.parts td{font-variant-numeric:tabular-nums}.parts tr.total th,.parts tr.total td{font-weight:600}
.label-cells{color:#00a045}.predicted-cells{color:#c0007f}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f6;padding:6px;border-radius:4px;max-height:240px;overflow:auto;margin:4px 0}
.tag{color:#1d4ed8;font-weight:600}.note{color:#b45309}
""".replace("LABEL", f"rgb{LABEL_COLOUR}").replace("PREDICTED", f"rgb{PREDICTED_COLOUR}")

# Filters: one attribute on <body>, one CSS rule per key; nothing leaves the page. The
# URL's #filter=KEY opens a filtered view (a link to "the false negatives" in a ticket).
SCRIPT = """
function show(key) {
  var known = false;
  document.querySelectorAll('.filters button').forEach(function (b) {
    b.classList.toggle('on', b.dataset.filter === key);
    known = known || b.dataset.filter === key;
  });
  document.body.dataset.filter = known ? key : 'all';
}
document.querySelectorAll('.filters button').forEach(function (button) {
  button.addEventListener('click', function () {
    show(button.dataset.filter);
    history.replaceState(null, '', '#filter=' + button.dataset.filter);
  });
});
if (location.hash.indexOf('#filter=') === 0) { show(location.hash.slice(8)); }
"""


def filter_style() -> str:
    return "".join(f'body[data-filter="{key}"] .item:not(.{key}){{display:none}}' for key in (*OUTCOMES, *FLAWS))


def render_page(summary: dict, items: list[ReportItem], grid: tuple[int, int], sampled: bool) -> str:
    body = "\n".join(item_html(item, grid) for item in items)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>IAD-R1 evaluation: {summary["n"]} items</title>
<style>{STYLE}{filter_style()}</style></head>
<body data-filter="all">
{header_html(summary, items, sampled)}
<main>
{body}
</main>
<script>{SCRIPT}</script>
</body></html>
"""


def write_html_report(
    predictions: str | Path,
    data: str | Path | Iterable[Record],
    out: str | Path,
    scorer: Scorer | None = None,
    limit: int | None = None,
    seed: int = 0,
    image_root: str | Path | None = None,
) -> Path:
    """Write the visual report of a predictions file (`iadr1-eval run`'s output) over the
    records it was generated from; returns the page's path."""
    scorer = scorer or Scorer()
    rows = prediction_rows(predictions)
    items = build_items(rows, records_by_id(data, image_root), scorer)
    summary = summary_of(items, scorer)
    shown = sample_items(items, limit, seed)
    page = render_page(summary, shown, scorer.grid, sampled=len(shown) < len(items))
    with atomic_open(out) as handle:
        handle.write(page)
    logger.info("wrote the visual report of %d items to %s", len(shown), out)
    return Path(out)
