"""A BERT encoder's forward pass in plain torch, for inference: the small model without ``transformers``' modeling.

Importing ``transformers``' ``BertModel`` costs 1.6-1.9 s before the first result (its modeling
imports pull ``torch.distributed.tensor``, ``torch._dynamo``, sympy and scipy.optimize) where the
forward pass is twelve lines of torch: embeddings, then per layer self-attention and a feed-forward,
each closed by a residual LayerNorm. Issue #28's cold start (≤ 4 s) is most of that import.

Only what the built-in small model and the bodies tuned from it use is supported (``supports``):
``model_type`` bert, absolute positions, ``gelu`` (erf), an encoder without cross-attention.
Anything else loads through ``transformers`` as before. ``tests/test_bert.py`` checks the outputs
against ``transformers.BertModel`` on the same weights, in fp32 and bf16.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .batching import length_batches

if TYPE_CHECKING:
    import torch


def supports(config: Mapping) -> bool:
    """Whether ``config`` (a ``config.json``) is a BERT encoder this module runs exactly as ``transformers`` does."""
    return (config.get("model_type") == "bert" and config.get("position_embedding_type", "absolute") == "absolute"
            and config.get("hidden_act") == "gelu" and not config.get("is_decoder", False)
            and not config.get("add_cross_attention", False)
            and config.get("hidden_size", 0) % max(config.get("num_attention_heads", 1), 1) == 0)


def _concat(tensors: list[torch.Tensor]) -> torch.Tensor:
    import torch

    return torch.cat(tensors, dim=0)


class BertEncoder:
    """``BertModel(...).last_hidden_state`` from a ``config.json`` and its state dict (inference only).

    >>> encoder = BertEncoder(config, state)
    >>> encoder(input_ids, attention_mask, token_type_ids).shape  # (rows, tokens, hidden_size)
    """

    def __init__(self, config: Mapping, state: Mapping[str, torch.Tensor]) -> None:
        if not supports(config):
            raise ValueError(f"not a BERT encoder this module runs: {dict(config).get('model_type')!r}")
        self.hidden_size = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        weights = {name.removeprefix("bert."): tensor for name, tensor in state.items()}
        missing = [name for name in self.expected_weights() if name not in weights]
        if missing:
            raise ValueError(f"BERT weights missing: {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
        self.weights = {name: weights[name] for name in self.expected_weights()}
        for i in range(self.layers):  # query, key and value in one projection: one matrix product instead of three
            parts = [f"encoder.layer.{i}.attention.self.{part}" for part in ("query", "key", "value")]
            for kind in ("weight", "bias"):
                self.weights[f"encoder.layer.{i}.attention.self.qkv.{kind}"] = _concat([self.weights.pop(f"{p}.{kind}") for p in parts])

    def expected_weights(self) -> list[str]:
        names = [f"embeddings.{part}" for part in ("word_embeddings.weight", "position_embeddings.weight",
                                                   "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")]
        for i in range(self.layers):
            for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                         "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
                names += [f"encoder.layer.{i}.{part}.weight", f"encoder.layer.{i}.{part}.bias"]
        return names

    def eval(self) -> BertEncoder:
        return self  # inference only: no dropout to switch off

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        from torch.nn import functional as F  # heavy: loaded by the weights already

        w = self.weights
        return F.layer_norm(x, (self.hidden_size,), w[f"{name}.weight"], w[f"{name}.bias"], self.eps)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        from torch.nn import functional as F

        return F.linear(x, self.weights[f"{name}.weight"], self.weights[f"{name}.bias"])

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden state ``(rows, tokens, hidden_size)``; zeros where ``attention_mask`` is 0.

        Padding costs nothing here. Every step but the attention (the projections, the feed-forward,
        the norms: 80-85 % of the time) runs on the real tokens alone, packed into one ``(tokens,
        hidden_size)`` matrix; the attention runs on groups of rows of like length (``attention_groups``),
        each padded only to its own longest.
        """
        import torch  # heavy: only once there is a model to run (this module is imported with the package)
        from torch.nn import functional as F

        w = self.weights
        rows, length = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        real = attention_mask.reshape(-1).nonzero().squeeze(1)  # the real tokens' places in the padded grid
        positions = torch.arange(length, device=input_ids.device).repeat(rows)[real]
        x = (F.embedding(input_ids.reshape(-1)[real], w["embeddings.word_embeddings.weight"])
             + F.embedding(token_type_ids.reshape(-1)[real], w["embeddings.token_type_embeddings.weight"])
             + F.embedding(positions, w["embeddings.position_embeddings.weight"]))
        x = self._norm(x, "embeddings.LayerNorm")
        groups = attention_groups(attention_mask.sum(1))
        head_size = self.hidden_size // self.heads
        qkv = x.new_zeros(len(x) + 1, 3 * self.hidden_size)
        for i in range(self.layers):
            layer = f"encoder.layer.{i}"
            torch.addmm(w[f"{layer}.attention.self.qkv.bias"], x, w[f"{layer}.attention.self.qkv.weight"].t(),
                        out=qkv[:-1])  # the last row stays zero: where ``place`` points for padding
            context = torch.empty_like(x)
            for place, keep, filled in groups:  # place: (rows, longest) rows into qkv, the zero row where padded
                group_rows, longest = place.shape
                q, k, v = qkv[place].view(group_rows, longest, 3, self.heads, head_size).permute(2, 0, 3, 1, 4)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1 / math.sqrt(head_size))
                context[place[filled]] = out.transpose(1, 2).reshape(-1, self.hidden_size)[filled.reshape(-1)]
            x = self._norm(self._linear(context, f"{layer}.attention.output.dense") + x, f"{layer}.attention.output.LayerNorm")
            inner = F.gelu(self._linear(x, f"{layer}.intermediate.dense"))
            x = self._norm(self._linear(inner, f"{layer}.output.dense") + x, f"{layer}.output.LayerNorm")
        out = x.new_zeros(rows * length, self.hidden_size)
        out[real] = x
        return out.view(rows, length, self.hidden_size)


ATTENTION_GROUP_OVERHEAD = 16
"""What one more attention call costs, in padded tokens: the price of splitting a group in two."""


def attention_groups(lengths: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """Rows of like length for the attention, as ``(place, keep, filled)`` per group.

    ``place`` is ``(rows, longest)``: each token's row in the packed real tokens (rows in the input's
    order, tokens in order), the index one past the last real token where the row is padded;
    ``keep`` the attention mask ``(rows, 1, 1, longest)`` (``None`` when no row is padded); ``filled``
    where ``place`` is a real token.
    """
    import torch

    starts = torch.cumsum(lengths, 0) - lengths
    total = int(lengths.sum())
    groups = []
    for rows in length_batches(lengths.tolist(), max_rows=len(lengths), max_tokens=2**62,
                               overhead=ATTENTION_GROUP_OVERHEAD):
        rows = torch.from_numpy(rows)
        longest = int(lengths[rows].max())
        offsets = torch.arange(longest)
        filled = offsets[None, :] < lengths[rows][:, None]
        place = torch.where(filled, starts[rows][:, None] + offsets[None, :], total)
        keep = None if bool(filled.all()) else filled[:, None, None, :]  # no mask: the attention's faster path
        groups.append((place, keep, filled))
    return groups
