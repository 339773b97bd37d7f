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


# --------------------------------------------------------------------------------------------
# The packaged recipes pin the official values (docs/recipes.md gives the source of each):
# guxinqian/Simple-CCReID configs/default_img.py, default_vid.py, res50_cels_cal*.yaml,
# c2dres50_ce_cal.yaml, script.sh, main.py; CroitoruAlin/dlcr Simple-CCReID/configs/default_img.py.

CAL_IMAGE = {
    "model.name": "cal_resnet50", "model.pretrained": "imagenet",
    "data.height": 384, "data.width": 192, "data.crop": "cal", "data.crop_prob": 0.5, "data.flip_prob": 0.5,
    "data.random_erasing": 0.5, "data.erasing": "cal", "data.interpolation": "bilinear",
    "optim.lr": 3.5e-4, "optim.weight_decay": 5e-4, "optim.milestones": (20, 40), "optim.gamma": 0.1,
    "optim.clothes_lr": 3.5e-4, "optim.clothes_lr_decay": False,
    "loss.label_smooth": 0.1, "loss.triplet_weight": 0.0, "loss.triplet_margin": 0.3,
    "loss.triplet_metric": "cosine", "loss.clothes_scale": 16.0, "loss.cal_epsilon": 0.1,
    "loss.cal_start_epoch": 25, "loss.cal_weight": 1.0,
    "sampler.batch_size": 32, "sampler.num_instances": 8, "sampler.batching": "cal", "sampler.mode": "paired",
    "sampler.schedule": "official",
    "train.epochs": 60, "train.eval_every": 5, "train.seed": 1, "train.amp": False,
    "eval.batch_size": 128, "eval.flip": True,
}
RECIPES = {
    "prcc": CAL_IMAGE, "ltcc": CAL_IMAGE, "vcclothes": CAL_IMAGE, "vcclothes_sc": CAL_IMAGE,
    "vcclothes_cc": CAL_IMAGE,
    # res50_cels_cal_16x4.yaml + --amp
    "deepchange": {**CAL_IMAGE, "sampler.num_instances": 4, "train.amp": True},
    # res50_cels_cal_tri_16x4.yaml + --amp
    "last": {**CAL_IMAGE, "sampler.num_instances": 4, "loss.triplet_weight": 1.0, "loss.triplet_margin": 0.3,
             "train.amp": True},
    # default_vid.py + c2dres50_ce_cal.yaml (16 clips per GPU x 2 GPUs)
    "ccvid": {**CAL_IMAGE, "model.name": "c2d_resnet50", "data.height": 256, "data.width": 128, "data.seq_len": 8, "data.crop": "none",
              "data.random_erasing": 0.0, "data.interpolation": "bicubic", "optim.milestones": (40, 80, 120),
              "loss.label_smooth": 0.0, "loss.cal_start_epoch": 50, "sampler.batch_size": 32,
              "sampler.num_instances": 4, "train.epochs": 150, "train.eval_every": 10, "eval.flip": False},
}


def _get(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_packaged_recipe_is_the_official_one(name):
    cfg = load_config(name)
    got = {k: _get(cfg, k) for k in RECIPES[name]}
    assert got == RECIPES[name]


def test_recipe_batch_is_four_identities_of_eight_real_images_plus_their_pairs():
    s = load_config("prcc").sampler
    assert s.batch_size // s.num_instances == 4 and s.num_instances == 8  # + 32 generated in paired mode


def test_schema_defaults_are_the_cal_image_recipe():
    cfg = load_config()
    for k, v in CAL_IMAGE.items():
        if k != "data.height" and not k.startswith("model."):
            assert _get(cfg, k) == v, k
    assert (cfg.data.height, cfg.data.width) == (384, 192)


def test_synthcc_inherits_the_recipe_but_keeps_its_size_and_model():
    syn = load_config("synthcc")
    own = {"data.height": 128, "data.width": 64, "model.name": "small_resnet", "model.pretrained": None,
           "sampler.schedule": "progressive"}  # the demo scales the curriculum with progressive_every
    for k, v in CAL_IMAGE.items():
        assert _get(syn, k) == own.get(k, v), k
