"""Settings: one validator for the CLI, the control channel and the UI form."""

from __future__ import annotations

import dataclasses

import pytest

from rnntui.config import ConfigError, HyperParams, TrainConfig


def test_defaults_are_valid():
    assert TrainConfig().validated() == TrainConfig()
    assert HyperParams().validated() == HyperParams()


@pytest.mark.parametrize(("name", "value", "words"), [
    ("lr", 0, "greater than 0"), ("lr", -1e-3, "greater than 0"), ("lr", float("nan"), "finite"),
    ("lr", "abc", "must be a number"), ("lr", 1e6, "at most 1000"), ("clip", 0, "greater than 0"),
    ("optimizer", "lbfgs", "one of"), ("clip_mode", "both", "one of"), ("temperature", -0.5, "between 0"),
    ("sample_length", 0, "between 1"), ("sample_length", 2.5, "whole number"), ("sample_every", True, "whole"),
    ("nonsense", 1, "unknown setting"),
])
def test_hyper_replace_refuses(name, value, words):
    with pytest.raises(ConfigError, match=words):
        HyperParams().replace(**{name: value})


def test_hyper_replace_cleans_text_input():
    h = HyperParams().replace(lr="0.01", optimizer=" SGD ", sample_length=50.0, temperature="0")
    assert (h.lr, h.optimizer, h.sample_length, h.temperature) == (0.01, "sgd", 50, 0.0)
    assert isinstance(h.sample_length, int)
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.lr = 1.0


@pytest.mark.parametrize(("field", "value", "words"), [
    ("hidden_size", 0, "hidden size"), ("seq_length", -1, "seq length"), ("batch_size", 0, "batch size"),
    ("dtype", "float16", "dtype"), ("init", "xavier", "init"), ("val_fraction", 0.95, "val fraction"),
    ("seed", -1, "seed"),
])
def test_train_config_refuses(field, value, words):
    with pytest.raises(ConfigError, match=words):
        dataclasses.replace(TrainConfig(), **{field: value}).validated()


def test_train_config_dict_roundtrip():
    cfg = TrainConfig(hidden_size=7, dtype="float64", hyper=HyperParams(lr=0.5, optimizer="rmsprop"))
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and isinstance(again.hyper, HyperParams)
