"""``crcm eval CKPT``: autoregressive rollouts on held-out episodes vs ground truth and a copy-last-frame baseline.

For each held-out episode, windows of ``context + horizon`` frames are cut
(``windows_per_episode`` of them, spaced through the episode). The model gets
the ``context`` real frames (with the actions that produced them) and the
dataset actions for the next ``horizon`` frames, and predicts them one by one
with its KV cache. Reported per horizon step: PSNR, SSIM, and for PushT the
pusher-position error (pusher segmented in each predicted frame vs the
simulator's true position); with a state probe (``probe=``, default CKPT/probe),
each logged state read off the predicted frames against the true one; the same
for the copy-last-frame baseline; and ms/frame at the eval batch and at batch 1.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from crcm_robotics.config import EvalConfig, key_map_from_config
from crcm_robotics.data.store import NormStats, TrajectoryStore
from crcm_robotics.eval import metrics as M
from crcm_robotics.model.checkpoint import build_model, load_checkpoint
from crcm_robotics.model.sampler import (
    SamplerSpec,
    check_guidance,
    encode_context,
    rollout,
    sampler_from_meta,
)
from crcm_robotics.model.tokenizer import FrameCodec, make_codec
from crcm_robotics.runtime.device import resolve_device


@dataclass
class EvalWindows:
    frames: np.ndarray  # uint8 [N, K+H, H, W, 3]
    actions: np.ndarray  # float32 [N, K+H, A'] producing actions, normalized
    agent_px: np.ndarray | None  # [N, K+H, 2] true pusher pixel position (PushT only)
    episodes: list[int]
    states: np.ndarray | None = None  # [N, K+H, S] logged states at the window's frames (stores that log them)


def cut_windows(store: TrajectoryStore, episodes: list[int], length: int, frame_skip: int, per_episode: int,
                norm: NormStats) -> EvalWindows:
    """Windows of ``length`` frames (spaced through each episode), their producing actions and pusher positions."""
    k = frame_skip
    frames, actions, agents, used, states = [], [], [], [], []
    pusht = "pusht" in store.attrs
    logged = store.state_dim > 0
    h, w = store.image_shape[:2]
    for e in episodes:
        a, b = store.episode_bounds(e)
        first, last = a + k, b - 1 - (length - 1) * k  # first: its k producing commands exist
        if last < first:
            continue
        starts = np.unique(np.linspace(first, last, per_episode).round().astype(int)) if per_episode > 1 else [first]
        ep_actions = store.action(a, b)
        ep_state = store.state(a, b) if logged else None
        for s in starts:
            idx = s + k * np.arange(length)
            frames.append(store.frames(int(idx[0]), int(idx[-1]) + 1, k))
            prod = np.stack([ep_actions[i - a - k : i - a].reshape(-1) for i in idx])
            actions.append(norm.normalize(prod))
            if ep_state is not None:
                states.append(ep_state[idx - a].astype(np.float64))
            if pusht and ep_state is not None:
                agents.append(M.pusht_state_to_pixels(ep_state[idx - a, :2], (h, w),
                                                      float(store.attrs["pusht"].get("workspace", 512.0))))
            used.append(e)
    if not frames:
        raise ValueError(
            f"no held-out episode of {store.path} has {length * k + k} frames for context+horizon={length}"
        )
    return EvalWindows(np.stack(frames), np.stack(actions), np.stack(agents) if agents else None, used,
                       np.stack(states) if states else None)


@torch.no_grad()
def predict(model, codec: FrameCodec, spec: SamplerSpec, frames: np.ndarray, actions: np.ndarray,
            context: int, device: torch.device, seed: int) -> np.ndarray:
    """uint8 predictions [N, H, ...] for windows [N, K+H, ...] given their first ``context`` frames."""
    x = codec.encode(torch.from_numpy(frames[:, :context]).to(device))
    a = torch.from_numpy(actions).to(device)
    cache = model.new_cache(len(frames), device)
    encode_context(model, cache, x, a[:, :context])
    gen = torch.Generator(device=device).manual_seed(seed)
    pred = rollout(model, cache, a[:, context:], spec, x[:, context - 1 : context], generator=gen,
                   project=codec.quantize)
    return codec.decode(pred).cpu().numpy()


def predict_windows(model, codec: FrameCodec, spec: SamplerSpec, frames: np.ndarray, actions: np.ndarray,
                    context: int, device: torch.device, batch: int, seed: int = 0,
                    on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """:func:`predict` over windows [N, K+H, ...] in chunks of ``batch`` (chunk i seeded ``seed + i``), uint8
    [N, H, ...]; ``on_batch(done)`` after each chunk (progress)."""
    preds = []
    for i in range(0, len(frames), batch):
        preds.append(predict(model, codec, spec, frames[i: i + batch], actions[i: i + batch], context, device,
                             seed + i))
        if on_batch is not None:
            on_batch(min(i + batch, len(frames)))
    return np.concatenate(preds)


def time_per_frame(model, codec, spec, windows: EvalWindows, context: int, device, batch: int, frames: int) -> float:
    """Median ms per predicted frame over 3 timed rollouts of ``frames`` frames at ``batch`` (after a warm-up)."""
    n = min(batch, len(windows.frames))
    f = windows.frames[:n, : context + frames]
    a = windows.actions[:n, : context + frames]
    times = []
    for i in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        predict(model, codec, spec, f, a, context, device, seed=i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append((time.perf_counter() - t0) * 1000 / frames)
    return float(np.median(times))


def rollout_scores(pred: np.ndarray, real: np.ndarray, agent_px: np.ndarray | None, device: torch.device,
                   ssim: bool = True) -> dict[str, Any]:
    """Per-horizon-step and mean PSNR (SSIM) of uint8 rollouts [N, H, h, w, 3], and the PushT pusher error
    against ``agent_px`` [N, H, 2] when given. Shared by ``crcm eval`` and validation inside training."""
    pt, rt = torch.from_numpy(pred).to(device), torch.from_numpy(real).to(device)
    ps = M.psnr(pt, rt).mean(0).cpu()
    out: dict[str, Any] = {"psnr": [round(float(v), 3) for v in ps], "psnr_mean": round(float(ps.mean()), 3)}
    if ssim:
        ss = M.ssim(pt, rt).mean(0).cpu()
        out = {"psnr": out["psnr"], "ssim": [round(float(v), 4) for v in ss], "psnr_mean": out["psnr_mean"],
               "ssim_mean": round(float(ss.mean()), 4)}
    if agent_px is not None:
        err, found = M.agent_position_error(pred, agent_px)
        out["agent_err_px"] = [round(float(v), 3) for v in err.mean(0)]
        out["agent_err_mean"] = round(float(err.mean()), 3)
        out["agent_detected"] = round(float(found.mean()), 4)
    return out


def position_groups(state_names: list[str]) -> dict[str, list[str]]:
    """``{P}_pos`` -> [``P_x``, ``P_y``(, ``P_z``)] for every point P the state logs by coordinates
    (PushT's agent and block, the arm's hand and object): one Euclidean error per point, in store units."""
    groups: dict[str, list[str]] = {}
    for name in state_names:
        if name.endswith("_x") and f"{name[:-2]}_y" in state_names:
            point = name[:-2]
            groups[f"{point}_pos"] = [f"{point}_{a}" for a in "xyz" if f"{point}_{a}" in state_names]
    return groups


def probe_scores(probe: Any, pred: np.ndarray, states: np.ndarray, device: torch.device) -> dict[str, Any]:
    """Per-horizon-step mean absolute error of each logged state read off uint8 frames [N, H, h, w, 3] by a
    state probe, against ``states`` [N, H, S] (store units; angles wrapped, in degrees): whether the predicted
    frames put the arm, pusher or object where the logged actions took them, which copying cannot fake."""
    n, h = pred.shape[:2]
    read = probe.state_of(torch.from_numpy(pred.reshape(n * h, *pred.shape[2:])).to(device)).reshape(n, h, -1)
    names = list(probe.spec.state_names)
    per_step: dict[str, list[float]] = {}
    for point, axes in position_groups(names).items():  # e.g. hand_pos: Euclidean over hand_x, hand_y, hand_z
        cols = [names.index(a) for a in axes]
        dist = np.linalg.norm(read[..., cols] - states[..., cols], axis=-1)
        per_step[point] = [round(float(v), 4) for v in dist.mean(0)]
    for i, name in enumerate(names):
        d = read[..., i] - states[..., i]
        if probe.spec.angles[i]:
            d, name = np.degrees(np.abs(np.angle(np.exp(1j * d)))), name + "_deg"
        per_step[name] = [round(float(v), 3) for v in np.abs(d).mean(0)]
    return {"probe_err": per_step, "probe_err_mean": {k: round(float(np.mean(v)), 3) for k, v in per_step.items()}}


def _eval_probe(cfg: EvalConfig, ckpt_dir: Path, device: torch.device, store: TrajectoryStore,
                win: EvalWindows) -> Any:
    """The state probe for ``probe_err`` figures: ``cfg.probe``, else CKPT/probe when it exists; None to skip
    (no probe, ``probe=none``, or a store without logged states). A probe that does not fit is an error."""
    if cfg.probe == "none" or win.states is None:
        return None
    path = Path(cfg.probe) if cfg.probe else Path(cfg.ckpt) / "probe"
    if not path.is_dir():
        if cfg.probe:
            raise ValueError(f"probe={cfg.probe}: no such state-probe directory")
        return None
    return fitting_probe(path, device, store, win)


def fitting_probe(path: Path, device: torch.device, store: TrajectoryStore, win: EvalWindows) -> Any:
    """The state probe at ``path``, checked to read the states ``win`` logs from frames of its size."""
    from crcm_robotics.plan.probe import load_probe

    probe = load_probe(path, device)
    if win.states is None:
        raise ValueError(f"probe {path}: store {store.path} logs no states to score it against")
    if len(probe.spec.state_names) != win.states.shape[-1] or tuple(probe.spec.image_hw) != win.frames.shape[2:4]:
        raise ValueError(f"probe {path} reads {len(probe.spec.state_names)} states from "
                         f"{probe.spec.image_hw[0]}x{probe.spec.image_hw[1]} frames; store {store.path} logs "
                         f"{win.states.shape[-1]} states at {win.frames.shape[2]}x{win.frames.shape[3]}")
    return probe


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    ckpt = load_checkpoint(cfg.ckpt, weights=cfg.weights)
    spec = sampler_from_meta(ckpt.meta, cfg.steps, cfg.solver, cfg.sampler, cfg.mid_times, cfg.guidance)
    check_guidance(spec, ckpt.model_config, cfg.ckpt)  # before the network is built: a refusal costs nothing
    model = build_model(ckpt, device)
    codec = make_codec(model.cfg, ckpt.path, device)  # pixels, or the latent codec the checkpoint carries
    data_path = cfg.data.path or ckpt.meta.get("data_path")
    if not data_path:
        raise ValueError("give data.path=STORE: the checkpoint does not name its training store")
    store = TrajectoryStore(data_path, key_map_from_config(cfg.data.key_map, data_path))
    same_store = store.content_hash() == ckpt.meta.get("data_hash")
    held_out = list(ckpt.meta["split"]["val"]) if same_store else list(range(store.num_episodes))
    if not held_out:
        raise ValueError(f"checkpoint {cfg.ckpt} held out no episodes of {data_path} (data.val_fraction was 0)")
    if cfg.episodes > 0:
        held_out = held_out[: cfg.episodes]
    frame_skip = int(ckpt.meta.get("frame_skip", 1))
    norm = NormStats.from_dict(ckpt.stats["action"])
    if cfg.context > model.cfg.cache_frames:
        raise ValueError(f"context={cfg.context} exceeds the model's {model.cfg.cache_frames}-frame KV cache")
    win = cut_windows(store, held_out, cfg.context + cfg.horizon, frame_skip, cfg.windows_per_episode, norm)

    t0 = time.perf_counter()
    pred = predict_windows(model, codec, spec, win.frames, win.actions, cfg.context, device, cfg.batch_size,
                           cfg.seed)  # [N, H, h, w, 3]
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    real = win.frames[:, cfg.context :]
    copy_last = np.repeat(win.frames[:, cfg.context - 1 : cfg.context], cfg.horizon, axis=1)

    def scores(p: np.ndarray) -> dict[str, Any]:
        return rollout_scores(p, real, None if win.agent_px is None else win.agent_px[:, cfg.context :], device)

    result: dict[str, Any] = {
        "checkpoint": str(cfg.ckpt), "kind": ckpt.meta.get("kind", "?"), "method": ckpt.meta.get("method"),
        "weights": str(ckpt.path), "update": ckpt.meta.get("step"),  # the run's selected weights unless weights=last
        "sampler": spec.to_meta(),
        "network_passes_per_frame": spec.network_passes, "horizon": cfg.horizon, "context": cfg.context,
        "episodes": len(set(win.episodes)), "rollouts": len(win.frames), "held_out_split": same_store,
        **scores(pred),
        "ms_per_frame": round(wall * 1000 / cfg.horizon / max(1, -(-len(win.frames) // cfg.batch_size)), 3),
        "eval_batch": min(cfg.batch_size, len(win.frames)),
    }
    if cfg.time_batch1:
        result["ms_per_frame_batch1"] = round(time_per_frame(model, codec, spec, win, cfg.context, device, 1,
                                                             min(cfg.horizon, 8)), 3)
    result["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result["baseline_copy_last"] = scores(copy_last)
    probe = _eval_probe(cfg, ckpt.path, device, store, win)
    if probe is not None:
        true = win.states[:, cfg.context :]
        result |= probe_scores(probe, pred, true, device)
        result["baseline_copy_last"] |= probe_scores(probe, copy_last, true, device)
        result["probe_floor"] = probe_scores(probe, real, true, device)["probe_err_mean"]
    if cfg.report:
        guide = f"_g{spec.guidance:g}" if spec.guided else ""  # a guided run does not overwrite the plain one's
        out = Path(cfg.out or Path("outputs") / "eval"
                   / f"{Path(cfg.ckpt).name}_{spec.kind}{spec.steps}{guide}_h{cfg.horizon}")
        result["report"] = str(write_report(out, result, win.frames, pred, copy_last, cfg.context))
    return result


def write_report(out: Path, result: dict[str, Any], frames: np.ndarray, pred: np.ndarray, copy_last: np.ndarray,
                 context: int) -> Path:
    """PNG strips (real / predicted per rollout), a GIF, PSNR- and agent-error-vs-horizon plots, the JSON."""
    from crcm_robotics.eval.report import grid, line_plot, save_gif, save_png

    out.mkdir(parents=True, exist_ok=True)
    n = min(4, len(frames))
    horizon = pred.shape[1]
    show = np.unique(np.linspace(0, horizon - 1, min(horizon, 16)).round().astype(int))
    rows = []
    for i in range(n):
        rows += [frames[i, context:][show], pred[i][show]]
    save_png(grid(rows, scale=2), out / "strips.png")
    full_pred = np.concatenate([frames[:n, :context], pred[:n]], axis=1)
    gif = np.concatenate([np.concatenate([frames[:n], full_pred], axis=2)[i] for i in range(n)], axis=2)
    every = max(1, -(-gif.shape[0] // 48))  # long rollouts: at most ~48 GIF frames
    save_gif(gif[::every], out / "rollout.gif", fps=10.0 / every, scale=2)
    base = result["baseline_copy_last"]
    line_plot({"model": result["psnr"], "copy last frame": base["psnr"]}, out / "psnr_vs_horizon.png",
              "horizon step", "PSNR (dB)", f"{result['kind']} {result['sampler']['kind']}×{result['sampler']['steps']}")
    if "agent_err_px" in result:
        line_plot({"model": result["agent_err_px"], "copy last frame": base["agent_err_px"]},
                  out / "agent_error_vs_horizon.png", "horizon step", "pusher position error (px)")
    if "probe_err" in result:  # the points' position errors (else the first four states), model and copy-last
        names = [k for k in result["probe_err"] if k.endswith("_pos")][:4] or list(result["probe_err"])[:4]
        line_plot({**{f"model: {k}": result["probe_err"][k] for k in names},
                   **{f"copy last: {k}": base["probe_err"][k] for k in names}},
                  out / "probe_error_vs_horizon.png", "horizon step", "state error read by the probe")
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return out
