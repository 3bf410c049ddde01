"""The distillation study's table from a folder of ``crcm eval`` / ``crcm distill`` JSON lines.

``python -m crcm_robotics.eval.study_table LOGDIR`` reads ``eval_<name>_h<H>.json``
(one ``crcm eval`` line each; ``<name>`` is ``<arm>_<k>step[_mid<times>]`` or ``teacher_…``)
and ``distill_<method>.log`` (the ``crcm distill`` summary line), and prints a
markdown table: per method and step count, mean PSNR/SSIM over the short
horizon, PSNR at its last step and at the long horizon's last step, pusher
error at the short horizon's last step and averaged over the long rollouts (PSNR
rewards blur; the pusher does not), batch-1 ms/frame and distillation wall time.
``--plot DIR --runs a,b,…`` also draws those runs (and copy-last) against the
horizon step: PSNR and pusher error over the short horizon and over the long one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from crcm_robotics.eval.report import line_plot


UNSEEN = "_unseen"  # runs evaluated on a store of an unseen policy (distill_study.sh UNSEEN=STORE)


def _last_json(path: Path) -> dict[str, Any] | None:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("{")] if path.exists() else []
    return json.loads(lines[-1]) if lines else None


def collect(logdir: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """{run name: {horizon: eval result}}."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for p in sorted(logdir.glob("eval_*_h*.json")):
        m = re.fullmatch(r"eval_(.+)_h(\d+)", p.stem)
        r = _last_json(p)
        if m and r:
            runs.setdefault(m.group(1), {})[int(m.group(2))] = r
    return runs


def _mean_pusher(result: dict[str, Any] | None) -> str:
    """The pusher error (px) averaged over every step of a rollout, or — where there is none."""
    err = (result or {}).get("agent_err_px")
    return f"{sum(err) / len(err):.2f}" if err else "—"


def _copy_last_row(label: str, base: dict[str, Any], long_base: dict[str, Any] | None) -> str:
    return f"| {label} | 0 | " + " | ".join([
        f"{base['psnr_mean']:.2f}", f"{base['ssim_mean']:.3f}", f"{base['psnr'][-1]:.2f}",
        f"{long_base['psnr'][-1]:.2f}" if long_base else "—",
        f"{base['agent_err_px'][-1]:.2f}" if "agent_err_px" in base else "—", _mean_pusher(long_base),
        "—", "—"]) + " |"


def table(logdir: Path) -> str:
    runs = collect(logdir)
    if not runs:
        return f"no eval results in {logdir}"
    header = ("| run | passes/frame | mean PSNR 1..H | mean SSIM 1..H | PSNR @H | PSNR @long | pusher err @H (px) "
              "| pusher err mean 1..long (px) | ms/frame b1 (eager) | distill wall s |")
    rows = [header, "|---" * 10 + "|"]
    base = unseen_base = None
    for name, by_h in sorted(runs.items(), key=lambda kv: (not kv[0].startswith("teacher"), kv[0])):
        short = by_h[min(by_h)]
        long = by_h[max(by_h)] if max(by_h) != min(by_h) else None
        if name.endswith(UNSEEN):  # distill_study.sh UNSEEN=: another store, so another copy-last
            unseen_base = unseen_base or short.get("baseline_copy_last")
        else:
            base = base or short.get("baseline_copy_last")
        arm = re.fullmatch(r"(.+)_\d+step(_mid[\d.,]+)?", name)
        method = arm.group(1) if arm else None
        summary = _last_json(logdir / f"distill_{method}.log") if method else None
        rows.append("| " + " | ".join([
            name, str(short["network_passes_per_frame"]), f"{short['psnr_mean']:.2f}", f"{short['ssim_mean']:.3f}",
            f"{short['psnr'][-1]:.2f}", f"{long['psnr'][-1]:.2f}" if long else "—",
            f"{short['agent_err_px'][-1]:.2f}" if "agent_err_px" in short else "—",
            _mean_pusher(long),
            f"{short['ms_per_frame_batch1']:.1f}" if "ms_per_frame_batch1" in short else "—",
            f"{summary['seconds']:.0f} ({summary['steps']} steps)" if summary else "—",
        ]) + " |")
    if base:
        longest = max(max(v) for v in runs.values())
        long_base = next((v[longest]["baseline_copy_last"] for v in runs.values() if longest in v), None)
        rows.append(_copy_last_row("copy last frame", base, long_base))
    if unseen_base:
        rows.append(_copy_last_row("copy last frame (unseen)", unseen_base, None))
    return "\n".join(rows)


def plot(logdir: Path, names: list[str], out: Path) -> list[Path]:
    """PNG plots of the named runs against the horizon step, with the copy-last baseline."""
    runs = collect(logdir)
    missing = [n for n in names if n not in runs]
    if missing:
        raise ValueError(f"no eval results for {missing} in {logdir}; runs there: {sorted(runs)}")
    short_h = min(min(runs[n]) for n in names)
    long_h = max(max(runs[n]) for n in names)
    specs = [(short_h, "psnr", "PSNR (dB)", "psnr_vs_horizon.png"),
             (short_h, "agent_err_px", "pusher error (px)", "pusher_err_vs_horizon.png")]
    if long_h != short_h:
        specs += [(long_h, "psnr", "PSNR (dB)", f"psnr_vs_horizon_{long_h}.png"),
                  (long_h, "agent_err_px", "pusher error (px)", f"pusher_err_vs_horizon_{long_h}.png")]
    written = []
    for h, key, ylabel, fname in specs:
        series = {n: runs[n][h][key] for n in names if h in runs[n] and key in runs[n][h]}
        base = next((runs[n][h]["baseline_copy_last"] for n in names if h in runs[n]), {})
        if key in base:
            series["copy last frame"] = base[key]
        if series:
            written.append(line_plot(series, out / fname, "horizon step", ylabel, f"held-out rollouts, {h} steps"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crcm_robotics.eval.study_table",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--plot", type=Path, help="folder for PNG plots of --runs against the horizon step")
    parser.add_argument("--runs", default="", help="comma-separated run names to plot (as in the table)")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:
        return int(e.code or 0)
    print(table(args.logdir))
    if args.plot:
        names = [n for n in args.runs.split(",") if n]
        if not names:
            parser.print_usage(sys.stderr)
            print("--plot needs --runs", file=sys.stderr)
            return 2
        for path in plot(args.logdir, names, args.plot):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
