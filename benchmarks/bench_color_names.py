"""How mltk's colour names agree with people's and experts': the table in the README.

Two sources, each split into a calibration half (the palette was tuned on it) and a held-out half:
the XKCD colour survey (crowd names, shipped by matplotlib) and the ISCC-NBS centroids (expert
names, :mod:`mltk.colors.iscc_nbs`). For each, the share of colours that mltk names by their base
term (exact) and by it or a neighbouring term (see :mod:`mltk.colors.naming`).

Run: .venv/bin/python benchmarks/bench_color_names.py [--palette OLD.yaml] [--misses]
  --palette FILE  also measure another palette (e.g. the one before a calibration) in the table
  --misses        list the held-out colours named by no accepted term
  --calibrate     print the moves mltk.colors.calibrate would still make on the shipped palette
                  (none when configs/colors.yaml is calibrated)
"""

from __future__ import annotations

import argparse


def table(rows_by_palette: dict[str, list[dict]]) -> str:
    lines = ["| palette | source | half | colours | exact | with neighbours |",
             "|---|---|---|---|---|---|"]
    for label, rows in rows_by_palette.items():
        for r in rows:
            n = r["colors"]
            lines.append(f"| {label} | {r['source']} | {r['half']} | {n} "
                         f"| {r['exact'] / n:.1%} ({r['exact']}/{n}) "
                         f"| {r['with_neighbours'] / n:.1%} ({r['with_neighbours']}/{n}) |")
    return "\n".join(lines)


def misses(namer) -> list[str]:
    from mltk.colors.naming import SOURCES, names_for, reference_colors

    out = []
    for source in SOURCES:
        colors = reference_colors(source, "held-out")
        for c, name in zip(colors, names_for(colors, namer), strict=True):
            if name not in c.accepted:
                also = f" (or {', '.join(c.neighbours)})" if c.neighbours else ""
                out.append(f"{source:9} {c.hex}  {c.name!r}: {c.term}{also}, mltk says {name}")
    return out


def main() -> None:
    from mltk.colors import ColorNamer, default_palette, load_palette
    from mltk.colors.calibrate import calibrate, keep_colors, tuning_colors
    from mltk.colors.naming import agreement_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--palette", help="another palette YAML file to measure as well")
    parser.add_argument("--misses", action="store_true", help="list held-out misses")
    parser.add_argument("--calibrate", action="store_true",
                        help="print the moves a calibration would still make")
    args = parser.parse_args()

    namers = {}
    if args.palette:
        namers[args.palette] = ColorNamer(load_palette(args.palette))
    namers["configs/colors.yaml"] = ColorNamer()
    print(table({label: agreement_report(namer) for label, namer in namers.items()}))
    if args.misses:
        print("\nheld-out colours named by no accepted term (configs/colors.yaml):")
        print("\n".join(misses(namers["configs/colors.yaml"])))
    if args.calibrate:
        lab, may_become = keep_colors()
        moves = calibrate(default_palette(), tuning_colors(), lab, keep_may_become=may_become)
        print(f"\n{len(moves)} moves left on the calibration halves")
        for m in moves:
            print(f"{m.action} {m.name} {m.hex} {m.survey_name or ''} -> {m.correct} accepted, "
                  f"{m.exact} exact")


if __name__ == "__main__":
    main()
