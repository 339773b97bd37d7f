from pathlib import Path

import pytest

from dlcr.config import (
    Config,
    apply_overrides,
    build,
    dump_yaml,
    list_packaged_configs,
    load_config,
    load_yaml,
    to_dict,
)
from dlcr.errors import ConfigError


def test_defaults_build():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.optim.milestones == (20, 40)
    assert cfg.sampler.mode == "paired"


def test_base_inheritance_and_own_keys_win(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("train: {epochs: 7, seed: 3}\nmodel: {name: bot_resnet50}\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\ntrain: {epochs: 9}\n")
    cfg = load_config(tmp_path / "b.yaml")
    assert cfg.train.epochs == 9  # own key wins
    assert cfg.train.seed == 3  # merged from the base, not replaced
    assert cfg.model.name == "bot_resnet50"


def test_base_cycle_is_an_error(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_yaml(tmp_path / "a.yaml")


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(overrides=["train.epochs=3", "optim.milestones=[1,2]", "model.pretrained=null",
                                 "optim.lr=0.01"])
    assert cfg.train.epochs == 3
    assert cfg.optim.milestones == (1, 2)
    assert cfg.model.pretrained is None
    assert cfg.optim.lr == pytest.approx(0.01)


def test_misspelt_key_names_key_and_suggests():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["train.epoch=3"])
    msg = str(e.value)
    assert "'train.epoch'" in msg and "did you mean 'train.epochs'" in msg
    assert "\n" not in msg


def test_misspelt_section_suggests():
    with pytest.raises(ConfigError, match="did you mean 'sampler'"):
        build(Config, {"samplr": {}})


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=ten", "train.epochs"),
        ("train.amp=1", "train.amp"),
        ("sampler.mode=shuffle", "sampler.mode"),
        ("optim.milestones=5", "optim.milestones"),
        ("optim.milestones=[a]", "optim.milestones[0]"),
        ("train=3", "train"),
    ],
)
def test_wrong_type_names_key(override, key):
    with pytest.raises(ConfigError, match=f"config key '{key.replace('[', '.').replace(']', '.')}"):
        load_config(overrides=[override])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="empty key"):
        apply_overrides({}, ["train..epochs=1"])


def test_invalid_yaml_is_one_line(tmp_path: Path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: {epochs: 3\n  seed: [\n")
    with pytest.raises(ConfigError, match="invalid YAML") as e:
        load_config(p)
    assert "\n" not in str(e.value)


def test_missing_config_lists_packaged():
    with pytest.raises(ConfigError, match="synthcc"):
        load_config("no_such_config")


def test_every_packaged_config_builds():
    names = list_packaged_configs()
    assert {"prcc", "ltcc", "vcclothes", "last", "deepchange", "ccvid", "synthcc"} <= set(names)
    for n in names:
        cfg = load_config(n)
        assert cfg.data.name == n
    syn = load_config("synthcc")
    assert syn.model.name == "small_resnet" and syn.model.pretrained is None
    assert syn.optim.milestones == (20, 40)  # from base/cal.yaml


def test_dump_roundtrip(tmp_path: Path):
    cfg = load_config("prcc", overrides=["train.epochs=2"])
    p = tmp_path / "c.yaml"
    p.write_text(dump_yaml(cfg))
    assert load_config(p) == cfg
    assert to_dict(cfg)["optim"]["milestones"] == [20, 40]


def test_exponent_floats_without_a_dot_are_accepted():
    cfg = load_config("synthcc", ["optim.lr=1e-3"])
    assert cfg.optim.lr == 1e-3
    with pytest.raises(ConfigError, match="optim.lr"):
        load_config("synthcc", ["optim.lr=fast"])


def test_options_nothing_reads_are_not_accepted():
    # these were once declared but never used: setting them must not be silently ignored
    for key in ("generate.mask_dilate=3", "train.log_every=5", "synth.ids=3"):
        with pytest.raises(ConfigError):
            load_config("synthcc", [key])


@pytest.mark.parametrize(
    "override, meant",
    [
        ("generate.inpainter=tiny", "generate.backend"),  # by letters it is closest to generate.parser
        ("generate.num_inference_steps=20", "generate.steps"),
        ("generate.cfg_scale=5", "generate.guidance_scale"),
        ("generate.sampler=ddim", "generate.scheduler"),
        ("generate.segmenter=hf", "generate.parser"),
        ("eval.l=3", "eval.refine_l"),
    ],
)
def test_misspelt_key_suggests_the_key_people_mean(override, meant):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert f"did you mean {meant!r}" in str(e.value)


def test_scheduler_null_keeps_the_checkpoints_scheduler():
    cfg = load_config(None, ["generate.scheduler=null"])
    assert cfg.generate.scheduler is None
    assert load_config(None, ["generate.scheduler=euler"]).generate.scheduler == "euler"
