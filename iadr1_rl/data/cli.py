"""`iadr1-data`: synthesise, convert, export and validate records.

iadr1-data synth --n N --seed S OUT_DIR
iadr1-data convert --from {mvtec,mmad,authors-grpo,sharegpt} INPUT OUT.jsonl
iadr1-data export --to {openrlhf,authors-grpo,sharegpt} IN.jsonl OUT
iadr1-data validate FILE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rewards.files import folder_of, is_stdio

from ..cli_errors import run_command
from .converters import (
    from_authors_grpo,
    from_mmad,
    from_mvtec,
    from_sharegpt,
    to_authors_grpo,
    to_hf_columns,
    to_openrlhf,
    to_sharegpt,
    to_verl,
)
from .defect_types import load_type_map
from .records import iter_records, write_json, write_jsonl, write_records
from .synth import CATEGORIES, DEFECT_TYPES, SynthConfig, synthesize
from .validate import ERROR, validate_file


def _grid(text: str) -> tuple[int, int]:
    try:
        rows, columns = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"grid must look like 3x3, got {text!r}") from error
    return rows, columns


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def cmd_synth(args: argparse.Namespace) -> int:
    config = SynthConfig(
        n=args.n,
        seed=args.seed,
        size=args.size,
        anomaly_ratio=args.anomaly_ratio,
        strength=args.strength,
        shots=args.shots,
        cot=args.cot,
        type_wordings=args.type_wordings,
        grid=args.grid,
        defects=args.defects or tuple(DEFECT_TYPES),
        categories=args.categories or CATEGORIES,
    )
    path = synthesize(args.out_dir, config, progress=not args.quiet)
    print(f"wrote {config.n} records to {path}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    type_map = load_type_map(args.type_map)
    source = args.input
    if args.source == "mvtec":
        records = from_mvtec(source, args.dataset, args.shots, type_map, args.grid, args.min_share)
    elif args.source == "mmad":
        records = from_mmad(source, args.image_root, args.shots, type_map)
    elif args.source == "authors-grpo":
        records = from_authors_grpo(source)
    else:
        records = from_sharegpt(source)
    count = write_records(records, args.output)
    report_written(f"{count} records", args.output)
    return 0


TO_STDOUT = ("openrlhf", "authors-grpo", "sharegpt")


def cmd_export(args: argparse.Namespace) -> int:
    if is_stdio(args.output) and args.target not in TO_STDOUT:
        raise ValueError(
            f"--to {args.target} writes a {'parquet file' if args.target == 'verl' else 'folder'}, "
            f"not text: give a path instead of '-' (stdout works for {', '.join(TO_STDOUT)})"
        )
    records = list(iter_records(args.input, progress=not args.quiet))
    out = args.output
    if args.target == "openrlhf":
        count = write_jsonl(to_openrlhf(records, args.prompt), out)
    elif args.target == "verl":
        count = write_parquet(to_verl(records, args.prompt, args.split), Path(out))
    elif args.target == "hf":
        count = write_hf_dataset(to_hf_columns(records, args.prompt), Path(out))
    else:
        base = folder_of(out)  # image paths are written relative to the output's folder
        rows = to_authors_grpo(records, base) if args.target == "authors-grpo" else to_sharegpt(records, base)
        write_json(rows, out)
        count = len(rows)
    report_written(f"{count} rows", out)
    return 0


def report_written(what: str, output: str | Path) -> None:
    """ "wrote N … to OUTPUT": on stderr when the data itself goes to stdout."""
    to_stdout = is_stdio(output)
    print(f"wrote {what} to {'stdout' if to_stdout else output}", file=sys.stderr if to_stdout else sys.stdout)


def write_parquet(rows: list[dict], path: Path) -> int:
    """Rows as a parquet file (pyarrow), written beside the target and renamed when whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), temp)
    temp.replace(path)
    return len(rows)


def write_hf_dataset(columns: dict[str, list], folder: Path) -> int:
    """A Hugging Face `datasets` folder (`load_from_disk`), images as an `Image` feature."""
    from datasets import Dataset, Image, Sequence

    dataset = Dataset.from_dict(columns).cast_column("images", Sequence(Image()))
    dataset.save_to_disk(str(folder))
    return len(dataset)


def cmd_validate(args: argparse.Namespace) -> int:
    count, problems = validate_file(args.file, check_images=not args.no_images)
    for problem in problems:
        print(problem)
    errors = sum(p.level == ERROR for p in problems)
    warnings = len(problems) - errors
    name = "stdin" if is_stdio(args.file) else args.file
    print(f"{name}: {count} records, {errors} errors, {warnings} warnings")
    return 1 if errors or (args.strict and warnings) else 0


FILE_OR_DASH = "(- for stdin)"


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="iadr1-data", description="Records for IAD-R1: make, convert, check.", formatter_class=formatter
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="render synthetic industrial defects", formatter_class=formatter)
    synth.add_argument("out_dir", type=Path, help="folder for records.jsonl and the images")
    synth.add_argument("--n", type=int, default=1000, help="number of records")
    synth.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same data")
    synth.add_argument("--size", type=int, default=112, help="image side in pixels (multiple of 28)")
    synth.add_argument("--anomaly-ratio", type=float, default=0.5, help="share of records with a defect")
    synth.add_argument("--strength", type=float, default=1.0, help="defect size and contrast scale")
    synth.add_argument("--shots", type=int, choices=(0, 1), default=0, help="1: records carry a normal reference")
    synth.add_argument(
        "--cot", choices=("full", "short"), default="full", help="reasoning written into each record's response"
    )
    synth.add_argument(
        "--type-wordings",
        type=int,
        default=1,
        help="name each defect in the reasoning by one of this many wordings (1: the label's term; up to 4 "
        "adds finer synonyms, as Expert-AD does; labels keep the coarse term)",
    )
    synth.add_argument("--grid", type=_grid, default=(3, 3), help="location grid, ROWSxCOLUMNS (e.g. 3x3)")
    synth.add_argument("--defects", type=_csv, help=f"comma-separated subset of {','.join(DEFECT_TYPES)}")
    synth.add_argument("--categories", type=_csv, help=f"comma-separated subset of {','.join(CATEGORIES)}")
    synth.set_defaults(func=cmd_synth)

    convert = sub.add_parser("convert", help="convert a dataset into records", formatter_class=formatter)
    convert.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=("mvtec", "mmad", "authors-grpo", "sharegpt"),
        help="mvtec: a dataset folder with masks; mmad: MMAD's question JSON (no masks, so no locations); "
        "authors-grpo / sharegpt: the authors' SC-GRPO and PA-SFT JSON",
    )
    convert.add_argument("input", help=f"dataset folder (mvtec) or JSON file {FILE_OR_DASH}")
    convert.add_argument("output", help="records JSONL to write (- for stdout)")
    convert.add_argument(
        "--shots", type=int, choices=(0, 1), default=0, help="1: records carry a normal reference image"
    )
    convert.add_argument("--dataset", help="dataset name (mvtec; default: the root folder's name)")
    convert.add_argument("--image-root", type=Path, help="where MMAD image paths start (default: beside the file)")
    convert.add_argument("--type-map", help="JSON/YAML {defect folder: type} over the built-in table")
    convert.add_argument("--grid", type=_grid, default=(3, 3), help="location grid for masks, ROWSxCOLUMNS (mvtec)")
    convert.add_argument(
        "--min-share", type=float, default=0.2, help="share of a mask's area that makes a cell (mvtec)"
    )
    convert.set_defaults(func=cmd_convert)

    export = sub.add_parser("export", help="export records for a trainer", formatter_class=formatter)
    export.add_argument(
        "--to",
        dest="target",
        required=True,
        choices=("openrlhf", "verl", "hf", "authors-grpo", "sharegpt"),
        help="openrlhf: JSONL prompts; verl: parquet; hf: a Hugging Face datasets folder (TRL, EasyR1); "
        "authors-grpo / sharegpt: the authors' SC-GRPO and PA-SFT JSON",
    )
    export.add_argument("input", help=f"records JSONL {FILE_OR_DASH}")
    export.add_argument("output", help="file or folder to write (- for stdout: openrlhf, authors-grpo, sharegpt)")
    export.add_argument("--prompt", default="train", help="prompt family (train, iad_r1, …)")
    export.add_argument("--split", default="train", help="split name written into verl's extra_info")
    export.set_defaults(func=cmd_export)

    validate = sub.add_parser(
        "validate", help="check a records file and report every problem", formatter_class=formatter
    )
    validate.add_argument("file", help=f"records JSONL {FILE_OR_DASH}")
    validate.add_argument("--no-images", action="store_true", help="do not check that images exist")
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1 on any)")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
