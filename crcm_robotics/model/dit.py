"""Action-conditioned, frame-causal diffusion transformer (DiT), top to bottom.

Shapes: ``B`` batch, ``F`` frames in the call, ``P`` tokens per frame,
``D`` width, ``C×H×W`` a frame in unit space (pixels in [-1, 1] / σ_data).

- Frames are cut into ``patch×patch`` tokens (+ fixed 2-D sin-cos positions).
- Each frame has its own conditioning ``c = emb(t_i) + emb(a_i)``: its TrigFlow
  time and the action that produced it (the command applied right after the
  previous frame). ``c`` drives adaLN-Zero modulation of every block.
- An optional per-token action field (:class:`ActionField`) adds an MLP of
  (action, token position) to each token, so commands can act locally.
- With ``action_null`` the network holds a learnt null action: trained in place
  of some frames' commands, it gives the action-free prediction that
  classifier-free action guidance (``sampler.SamplerSpec.guidance``) steers from.
- Attention is frame-causal: a token sees the tokens of the frames its
  ``frame_mask`` row allows (default: frames ≤ its own). Rotary embeddings
  encode the frame index (relative, so a rolling KV cache can run forever)
  and, with ``spatial_rope``, the token's row and column.
- With a :class:`KVCache`, new frames also attend to the cached clean frames;
  ``write_cache=True`` stores the new frames' keys/values (used for clean frames).
- The network outputs the TrigFlow ``F`` (see ``trigflow.py``); it knows
  nothing about noise schedules.
- A sampler makes several passes over the same frame that differ only in the
  noisy input and its time; a :class:`FrameTerms` handed to each of them lets
  the first compute what they share (positions, mask, RoPE, the action's
  conditioning) and the others reuse it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from crcm_robotics.config import ModelConfig
from crcm_robotics.model.kv_cache import KVCache

# ---------------------------------------------------------------- embeddings


def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[N] → [N, dim] sin/cos features (DiT's timestep embedding)."""
    half = dim // 2
    dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=dtype) / half)
    args = values.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedder(nn.Module):
    def __init__(self, dim: int, time_scale: float, freq_dim: int = 256):
        super().__init__()
        self.time_scale = time_scale
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # t [N] → [N, D]
        emb = sinusoidal_embedding(t * self.time_scale, self.freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ActionEmbedder(nn.Module):
    def __init__(self, action_dim: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(action_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # a [N, A] → [N, D]
        return self.mlp(a)


def grid_features(h: int, w: int, octaves: int = 4) -> torch.Tensor:
    """Per-token coordinates [h*w, 2 + 4*octaves]: (y, x) of each patch centre in [-1, 1] plus sin/cos."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w * 2 - 1
    yx = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)  # [P, 2]
    freqs = math.pi * 2.0 ** torch.arange(octaves, dtype=torch.float32)  # [O]
    args = (yx[:, :, None] * freqs).reshape(h * w, -1)
    return torch.cat([yx, torch.sin(args), torch.cos(args)], dim=1)


class ActionField(nn.Module):
    """Per-token action embedding: an MLP of (action, token position) added to every token of a frame.

    adaLN gives a frame one global vector per action; a command whose effect is local in the image
    (a pusher's target position, a gripper moving through part of the view) then has to be mapped
    to places by the blocks. This field lets the action say directly *where* in the frame it acts.
    The last layer starts at zero, so a fresh model ignores it.
    """

    def __init__(self, action_dim: int, dim: int, grid: tuple[int, int]):
        super().__init__()
        self.register_buffer("coords", grid_features(*grid), persistent=False)  # [P, G]
        hidden = dim
        self.from_action = nn.Linear(action_dim, hidden)
        self.from_coords = nn.Linear(self.coords.shape[1], hidden, bias=False)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # a [B, F, A] → [B, F, P, D]
        h = self.from_action(a)[:, :, None] + self.from_coords(self.coords.to(a.dtype))  # [B, F, P, H]
        return self.mlp(h)


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positions [h*w, dim] (half the channels for rows, half for columns)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    out = [torch.sin(ys.reshape(-1, 1) * omega), torch.cos(ys.reshape(-1, 1) * omega),
           torch.sin(xs.reshape(-1, 1) * omega), torch.cos(xs.reshape(-1, 1) * omega)]
    pe = torch.cat(out, dim=1)
    return Fn.pad(pe, (0, dim - pe.shape[1])).float()


def rope_angles(positions: torch.Tensor, pairs: int, theta: float) -> torch.Tensor:
    """Rotation angles [N, pairs] for positions [N] (float64: exact for long streams)."""
    inv_freq = theta ** (-torch.arange(pairs, device=positions.device, dtype=torch.float64) / pairs)
    return positions.to(torch.float64)[:, None] * inv_freq[None]


def spatial_pairs(head_dim: int) -> int:
    """Rotary pairs given to each image axis by 3-D RoPE (the rest, about a third, go to time)."""
    return (head_dim // 2) // 3


def rope_cos_sin(
    positions: torch.Tensor, grid: tuple[int, int], head_dim: int, theta: float, dtype: torch.dtype,
    spatial: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [F*P, head_dim/2] for frame positions [F] and a ``grid`` of P = gh*gw tokens per frame.

    With ``spatial`` the rotary pairs are split between time (frame index), token row and token column,
    so attention scores depend on *relative* offsets in space as well as in time: a moving object looks
    the same to attention wherever it is. Without it every pair encodes time.
    """
    half = head_dim // 2
    gh, gw = grid
    p = gh * gw
    n_s = spatial_pairs(head_dim) if spatial else 0
    t_ang = rope_angles(positions, half - 2 * n_s, theta).repeat_interleave(p, 0)  # [F*P, half-2n_s]
    parts = [t_ang]
    if n_s:
        rows = torch.arange(gh, device=positions.device).repeat_interleave(gw)  # [P]
        cols = torch.arange(gw, device=positions.device).repeat(gh)
        f = positions.shape[0]
        parts += [rope_angles(rows, n_s, theta).repeat(f, 1), rope_angles(cols, n_s, theta).repeat(f, 1)]
    angles = torch.cat(parts, dim=1)
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B, heads, L, hd] by per-token cos/sin [L, hd/2] (half-split pairs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, F, P, D]; shift/scale [B, F, D] per frame."""
    return x * (1 + scale[:, :, None]) + shift[:, :, None]


# ---------------------------------------------------------------- attention + block


class QKNorm(nn.RMSNorm):
    """RMSNorm whose weight follows the input's dtype.

    Under bf16 autocast q and k are bf16 while the weight stays float32; ``rms_norm`` then falls back from its
    fused kernel to several elementwise ones (with a warning), in every layer of every training step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(x.dtype)
        return Fn.rms_norm(x, self.normalized_shape, weight, self.eps)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = QKNorm(self.head_dim, eps=1e-6)
        self.k_norm = QKNorm(self.head_dim, eps=1e-6)
        self.proj = nn.Linear(dim, dim)
        self.impl = "sdpa"  # "math" for forward-mode AD (JVP) and exact reference checks

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
        cache: KVCache | None, layer: int, write_index: torch.Tensor | None,
    ) -> torch.Tensor:
        b, n, d = x.shape  # x [B, L, D], L = F*P
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3×[B, h, L, hd]
        q = apply_rope(self.q_norm(q), cos, sin)
        k = apply_rope(self.k_norm(k), cos, sin)
        k_all, v_all = k, v
        if cache is not None:  # cached clean frames first, then this call's frames
            k_all = torch.cat([cache.k[layer].to(k.dtype), k], dim=2)
            v_all = torch.cat([cache.v[layer].to(v.dtype), v], dim=2)
            if write_index is not None:
                cache.write(layer, k, v, write_index)
        if self.impl == "math":
            scores = (q @ k_all.transpose(-2, -1)) * self.head_dim**-0.5
            scores = scores.masked_fill(~mask, float("-inf"))
            out = scores.softmax(dim=-1) @ v_all
        else:
            out = Fn.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c, cos, sin, mask, cache, layer, write_index):  # x [B, F, P, D], c [B, F, D]
        b, f, p, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # each [B, F, D]
        h = modulate(self.norm1(x), shift1, scale1).reshape(b, f * p, d)
        h = self.attn(h, cos, sin, mask, cache, layer, write_index).reshape(b, f, p, d)
        x = x + gate1[:, :, None] * h
        h = self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x + gate2[:, :, None] * h


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x, c):  # x [B, F, P, D] → [B, F, P, out_dim]
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------- model


class FrameTerms:
    """What every network pass over the same frames shares: the attention mask, RoPE's cos/sin of their positions,
    the action embedding and the action field (:meth:`CausalDiT.forward` fills it on the first pass).

    Hand one empty object to each pass over the same frames, actions and cache state (a sampler's denoising
    passes of one frame and its cache write); a pass of another batch, frame count or dtype is refused.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.values: tuple | None = None

    def get(self, key: tuple) -> tuple | None:
        if self.key is not None and key != self.key:
            raise ValueError(f"FrameTerms filled for (batch, frames, dtype) {self.key} reused for {key}")
        return self.values

    def put(self, key: tuple, values: tuple) -> None:
        self.key, self.values = key, values


class CausalDiT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.grid = (cfg.height // cfg.patch, cfg.width // cfg.patch)
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        patch_dim = cfg.patch * cfg.patch * cfg.channels
        self.patch_embed = nn.Linear(patch_dim, cfg.dim)
        self.register_buffer("pos_embed", sincos_2d(*self.grid, cfg.dim), persistent=False)  # [P, D]
        self.time_embed = TimeEmbedder(cfg.dim, cfg.time_scale)
        self.action_embed = ActionEmbedder(cfg.action_dim, cfg.dim)
        self.action_field = ActionField(cfg.action_dim, cfg.dim, self.grid) if cfg.action_field else None
        # the learnt "no action" of classifier-free action guidance (model.action_null): a point in the
        # normalised action space that the action embedding and field read like any command
        self.null_action = nn.Parameter(torch.zeros(cfg.action_dim)) if cfg.action_null else None
        self.blocks = nn.ModuleList([Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.final = FinalLayer(cfg.dim, patch_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for blk in self.blocks:  # adaLN-Zero: every residual branch starts closed
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        nn.init.zeros_(self.final.ada[-1].weight)
        nn.init.zeros_(self.final.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)
        if self.action_field is not None:
            nn.init.zeros_(self.action_field.mlp[-1].weight)

    def null_actions(self, like: torch.Tensor) -> torch.Tensor:
        """The learnt null action in the shape and dtype of the actions ``like`` [..., A]."""
        if self.null_action is None:
            raise ValueError("this network has no null action (model.action_null=false): it was not trained "
                             "for action guidance; sample it with guidance=1")
        return self.null_action.to(like.dtype).expand_as(like)

    def set_attention(self, impl: str) -> None:
        """"sdpa" (fused kernels) or "math" (plain matmul-softmax; supports forward-mode AD)."""
        if impl not in ("sdpa", "math"):
            raise ValueError(f"attention impl {impl!r} unknown; expected 'sdpa' or 'math'")
        for blk in self.blocks:
            blk.attn.impl = impl

    def new_cache(self, batch: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> KVCache:
        c = self.cfg
        return KVCache.empty(c.depth, batch, c.heads, c.dim // c.heads, c.cache_frames, self.tokens_per_frame,
                             device, dtype)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:  # [B, F, C, H, W] → [B, F, P, p*p*C]
        b, f, ch, h, w = x.shape
        p = self.cfg.patch
        x = x.reshape(b, f, ch, h // p, p, w // p, p).permute(0, 1, 3, 5, 4, 6, 2)
        return x.reshape(b, f, (h // p) * (w // p), p * p * ch)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:  # [B, F, P, p*p*C] → [B, F, C, H, W]
        b, f = x.shape[:2]
        p, ch = self.cfg.patch, self.cfg.channels
        gh, gw = self.grid
        x = x.reshape(b, f, gh, gw, p, p, ch).permute(0, 1, 6, 2, 4, 3, 5)
        return x.reshape(b, f, ch, gh * p, gw * p)

    def forward(
        self,
        x: torch.Tensor,  # [B, F, C, H, W] noisy (or clean) frames, unit space
        t: torch.Tensor,  # [B, F] TrigFlow time of each frame (0 = clean)
        action: torch.Tensor,  # [B, F, A] normalized action that produced each frame
        positions: torch.Tensor | None = None,  # [F] int64 frame indices; default: after the cache
        frame_mask: torch.Tensor | None = None,  # [F, F] bool, row i = frames i may see; default causal
        cache: KVCache | None = None,
        write_cache: bool = False,
        terms: FrameTerms | None = None,  # shared by the passes over the same frames (see FrameTerms)
    ) -> torch.Tensor:  # F prediction [B, F, C, H, W]
        b, f = x.shape[:2]
        write_index = None
        if write_cache:
            if cache is None:
                raise ValueError("write_cache=True needs a cache")
            write_index = cache.token_index(f)

        tokens = self.patch_embed(self.patchify(x)) + self.pos_embed  # [B, F, P, D]
        key = (b, f, tokens.dtype)
        shared = terms.get(key) if terms is not None else None
        if shared is None:
            shared = self._frame_terms(action, tokens.dtype, positions, frame_mask, cache)
            if terms is not None:
                terms.put(key, shared)
        mask, cos, sin, action_c, action_tokens = shared
        if action_tokens is not None:
            tokens = tokens + action_tokens
        c = (self.time_embed(t.reshape(-1)) + action_c).reshape(b, f, -1)
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens, c, cos, sin, mask, cache, i, write_index)
        if write_cache:
            cache.advance(f)  # type: ignore[union-attr]
        return self.unpatchify(self.final(tokens, c))

    def _frame_terms(self, action: torch.Tensor, dtype: torch.dtype, positions: torch.Tensor | None,
                     frame_mask: torch.Tensor | None, cache: KVCache | None) -> tuple:
        """The attention mask, RoPE cos/sin, action embedding [B*F, D] and action field [B, F, P, D] (or None)
        of frames ``action`` [B, F, A] after ``cache``'s frames: all that a pass does not take from x or t."""
        b, f = action.shape[:2]
        p = self.tokens_per_frame
        dev = action.device
        if positions is None:
            base = cache.frames_seen if cache is not None else torch.zeros((), dtype=torch.int64, device=dev)
            positions = base + torch.arange(f, device=dev)
        if frame_mask is None:
            frame_mask = torch.ones(f, f, dtype=torch.bool, device=dev).tril()
        mask = frame_mask.repeat_interleave(p, 0).repeat_interleave(p, 1)  # [F*P, F*P]
        if cache is not None:
            mask = torch.cat([cache.valid_tokens()[None, :].expand(f * p, -1), mask], dim=1)
        cos, sin = rope_cos_sin(positions, self.grid, self.cfg.dim // self.cfg.heads, self.cfg.rope_theta,
                                dtype, spatial=self.cfg.spatial_rope)  # [F*P, hd/2]
        action_c = self.action_embed(action.reshape(b * f, -1))
        action_tokens = self.action_field(action.to(dtype)) if self.action_field is not None else None
        return mask, cos, sin, action_c, action_tokens
