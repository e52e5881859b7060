"""The paper's balanced accuracies (%) of IAD-R1 (PA-SFT + SC-GRPO) per backbone (Table 4;
the Table 1 rows agree), to draw beside our own."""

from __future__ import annotations

DATASETS_0SHOT = ("MVTec", "DAGM", "DTD", "SDD", "MPDD", "VisA")
DATASETS_1SHOT = ("MVTec", "VisA")

# backbone -> (0-shot in DATASETS_0SHOT order, 1-shot in DATASETS_1SHOT order)
IAD_R1: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "llava_ov_0_5b": ((81.0, 93.3, 95.5, 88.6, 69.4, 74.9), (70.8, 66.9)),
    "qwen2_vl_2b": ((77.3, 73.8, 84.0, 62.8, 69.5, 67.7), (78.5, 69.7)),
    "qwen2_5_vl_3b": ((77.6, 85.2, 89.1, 83.4, 59.2, 69.8), (78.6, 74.1)),
    "qwen2_5_vl_7b": ((81.9, 85.2, 90.8, 83.4, 65.8, 75.4), (85.5, 77.7)),
    "llava_1_5_7b": ((79.4, 75.4, 86.7, 83.6, 62.3, 72.9), (77.8, 71.8)),
    "llava_ov_7b": ((86.7, 94.8, 96.2, 90.1, 70.9, 78.0), (80.0, 71.5)),
    "llava_1_6_8b": ((84.7, 79.0, 88.0, 84.5, 64.1, 70.4), (78.0, 64.4)),
}

_ALIASES = {
    "mvtec": "MVTec",
    "mvtecad": "MVTec",
    "mvtec ad": "MVTec",
    "visa": "VisA",
    "mpdd": "MPDD",
    "dagm": "DAGM",
    "dtd": "DTD",
    "sdd": "SDD",
}


def canonical_dataset(name: str) -> str | None:
    """`MVTec-AD` → `MVTec`; None for a dataset the paper does not report."""
    key = name.lower().replace("-", " ").replace("_", " ").strip()
    return _ALIASES.get(key) or _ALIASES.get(key.replace(" ", ""))


def paper_figures(backbone: str | None, shots: int = 0) -> dict[str, float]:
    """{dataset: balanced accuracy as a fraction} for a backbone, or {} when unknown.

    >>> paper_figures("qwen2_5_vl_3b")["MVTec"]
    0.776
    """
    if backbone not in IAD_R1:
        return {}
    zero, one = IAD_R1[backbone]
    names, values = (DATASETS_0SHOT, zero) if shots == 0 else (DATASETS_1SHOT, one)
    return {name: round(value / 100, 4) for name, value in zip(names, values)}
