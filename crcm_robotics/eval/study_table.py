"""The distillation study's table from a folder of ``crcm eval`` / ``crcm distill`` JSON lines.

``python -m crcm_robotics.eval.study_table LOGDIR`` reads ``eval_<name>_h<H>.json``
(one ``crcm eval`` line each; ``<name>`` is ``<method>_<k>step`` or ``teacher_…``)
and ``distill_<method>.log`` (the ``crcm distill`` summary line), and prints a
markdown table: per method and step count, mean PSNR/SSIM over the short
horizon, PSNR at its last step and at the long horizon's last step, pusher
error, batch-1 ms/frame and distillation wall time.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any


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


def table(logdir: Path) -> str:
    runs = collect(logdir)
    if not runs:
        return f"no eval results in {logdir}"
    header = ("| run | passes/frame | mean PSNR 1..H | mean SSIM 1..H | PSNR @H | PSNR @long | pusher err @H (px) "
              "| ms/frame b1 (eager) | distill wall s |")
    rows = [header, "|---" * 9 + "|"]
    base = None
    for name, by_h in sorted(runs.items(), key=lambda kv: (not kv[0].startswith("teacher"), kv[0])):
        short = by_h[min(by_h)]
        long = by_h[max(by_h)] if max(by_h) != min(by_h) else None
        base = base or short.get("baseline_copy_last")
        method = name.rsplit("_", 1)[0] if name.endswith("step") else None
        summary = _last_json(logdir / f"distill_{method}.log") if method else None
        rows.append("| " + " | ".join([
            name, str(short["network_passes_per_frame"]), f"{short['psnr_mean']:.2f}", f"{short['ssim_mean']:.3f}",
            f"{short['psnr'][-1]:.2f}", f"{long['psnr'][-1]:.2f}" if long else "—",
            f"{short['agent_err_px'][-1]:.2f}" if "agent_err_px" in short else "—",
            f"{short['ms_per_frame_batch1']:.1f}" if "ms_per_frame_batch1" in short else "—",
            f"{summary['seconds']:.0f} ({summary['steps']} steps)" if summary else "—",
        ]) + " |")
    if base:
        longest = max(max(v) for v in runs.values())
        long_base = next((v[longest]["baseline_copy_last"] for v in runs.values() if longest in v), None)
        rows.append("| copy last frame | 0 | " + " | ".join([
            f"{base['psnr_mean']:.2f}", f"{base['ssim_mean']:.3f}", f"{base['psnr'][-1]:.2f}",
            f"{long_base['psnr'][-1]:.2f}" if long_base else "—",
            f"{base['agent_err_px'][-1]:.2f}" if "agent_err_px" in base else "—", "—", "—"]) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m crcm_robotics.eval.study_table LOGDIR", file=sys.stderr)
        return 2
    print(table(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
