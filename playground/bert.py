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

if TYPE_CHECKING:
    import torch


def supports(config: Mapping) -> bool:
    """Whether ``config`` (a ``config.json``) is a BERT encoder this module runs exactly as ``transformers`` does."""
    return (config.get("model_type") == "bert" and config.get("position_embedding_type", "absolute") == "absolute"
            and config.get("hidden_act") == "gelu" and not config.get("is_decoder", False)
            and not config.get("add_cross_attention", False)
            and config.get("hidden_size", 0) % max(config.get("num_attention_heads", 1), 1) == 0)


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
        import torch  # heavy: only once there is a model to run (this module is imported with the package)
        from torch.nn import functional as F

        w = self.weights
        rows, length = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(length, device=input_ids.device)
        x = (F.embedding(input_ids, w["embeddings.word_embeddings.weight"])
             + F.embedding(token_type_ids, w["embeddings.token_type_embeddings.weight"])
             + F.embedding(positions, w["embeddings.position_embeddings.weight"])[None])
        x = self._norm(x, "embeddings.LayerNorm")
        keep = attention_mask.bool()[:, None, None, :]  # every query may attend to the real tokens only
        head_size = self.hidden_size // self.heads
        for i in range(self.layers):
            layer = f"encoder.layer.{i}"

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(rows, length, self.heads, head_size).transpose(1, 2)

            q, k, v = (split(self._linear(x, f"{layer}.attention.self.{part}")) for part in ("query", "key", "value"))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1 / math.sqrt(head_size))
            context = context.transpose(1, 2).reshape(rows, length, self.hidden_size)
            x = self._norm(self._linear(context, f"{layer}.attention.output.dense") + x, f"{layer}.attention.output.LayerNorm")
            inner = F.gelu(self._linear(x, f"{layer}.intermediate.dense"))
            x = self._norm(self._linear(inner, f"{layer}.output.dense") + x, f"{layer}.output.LayerNorm")
        return x
