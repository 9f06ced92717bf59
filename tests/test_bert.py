"""playground/bert.py: the small model's forward pass in plain torch gives transformers' BertModel outputs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from playground import bert
from playground.embeddings import load_transformer, model_path, read_safetensors

TEXTS = ["The package was damaged", "ok", "A much longer review: the zip broke after three weeks and support never "
         "answered my e-mails, so I returned it.", "🎉 Ünïcödé and CAPITALS"]


def outputs(dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ours, transformers', attention mask) on TEXTS padded in one batch, same weights, same dtype."""
    path = model_path("small")
    config = json.loads((path / "config.json").read_text())
    state = read_safetensors(path / "model.safetensors", dtype)
    reference = BertModel.from_pretrained(None, config=BertConfig(**config), state_dict=state, dtype=dtype,
                                          add_pooling_layer=False).eval()
    features = AutoTokenizer.from_pretrained(str(path))(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ours = bert.BertEncoder(config, state)(**features)
        theirs = reference(**features).last_hidden_state
    return ours.float(), theirs.float(), features["attention_mask"].bool()


def test_fp32_matches_transformers_on_every_real_token():
    ours, theirs, mask = outputs(torch.float32)
    assert ours.shape == theirs.shape
    assert torch.max(torch.abs(ours[mask] - theirs[mask])).item() < 1e-4


def test_bf16_matches_transformers_to_bf16_rounding():
    ours, theirs, mask = outputs(torch.bfloat16)
    cos = torch.nn.functional.cosine_similarity(ours[mask], theirs[mask], dim=-1)
    assert cos.min().item() > 0.999


def test_only_bert_encoders_it_runs_exactly_are_taken():
    config = json.loads((model_path("small") / "config.json").read_text())
    assert bert.supports(config)
    for change in ({"model_type": "mpnet"}, {"hidden_act": "relu"}, {"position_embedding_type": "relative_key"},
                   {"is_decoder": True}):
        assert not bert.supports({**config, **change})
    with pytest.raises(ValueError, match="missing"):
        bert.BertEncoder(config, {})


def test_the_small_model_loads_as_plain_torch_and_the_large_through_transformers():
    assert isinstance(load_transformer(model_path("small"), torch.float32), bert.BertEncoder)
    large = model_path("large")
    assert not bert.supports(json.loads((large / "config.json").read_text()))


def test_the_attention_runs_on_rows_of_like_length_each_padded_to_its_own_longest():
    groups = bert.attention_groups(torch.tensor([3, 40, 3, 41]))
    by_rows = {tuple(sorted(int(r) for r in (place[:, 0]).tolist())): (place, keep) for place, keep, _ in groups}
    # places are the packed tokens' indices: row 0 starts at 0, row 1 at 3, row 2 at 43, row 3 at 46
    assert set(by_rows) == {(0, 43), (3, 46)}
    short_place, short_keep = by_rows[(0, 43)]
    assert short_place.shape == (2, 3) and short_keep is None  # equal lengths: no padding, no mask
    long_place, long_keep = by_rows[(3, 46)]
    assert long_place.shape == (2, 41) and long_keep is not None
    assert int(long_place.max()) == 87  # the padded slot points one past the last real token (3 + 40 + 3 + 41)


def test_padding_does_not_change_a_text_s_hidden_states():
    path = model_path("small")
    config = json.loads((path / "config.json").read_text())
    encoder = bert.BertEncoder(config, read_safetensors(path / "model.safetensors", torch.float32))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    with torch.inference_mode():
        together = encoder(**tokenizer(TEXTS, padding=True, return_tensors="pt"))
        for i, text in enumerate(TEXTS):
            alone = encoder(**tokenizer([text], return_tensors="pt"))[0]
            assert torch.max(torch.abs(together[i, :len(alone)] - alone)).item() < 1e-4
            assert not together[i, len(alone):].any()  # padding stays zero, never computed
