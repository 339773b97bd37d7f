import logging

import pytest

from dlcr.config import load_config
from dlcr.config_args import eval_settings
from dlcr.engine.evaluate import EvalSettings
from dlcr.errors import CheckpointError


def test_recorded_input_keys_win_unless_set_explicitly(caplog):
    cfg = load_config("synthcc", ["data.height=128", "data.width=64", "data.seq_len=4", "eval.batch_size=7"])
    rec = {"data": {"height": 64, "width": 32, "seq_len": 8}, "eval": {"batch_size": 99}}
    st = EvalSettings.for_checkpoint(eval_settings(cfg), rec)
    assert (st.height, st.width, st.seq_len, st.batch_size) == (64, 32, 8, 7)  # batch size is not an input key
    with caplog.at_level(logging.WARNING):
        st = EvalSettings.for_checkpoint(eval_settings(cfg), rec, {"data.height"}, source="ck.json")
    assert (st.height, st.width) == (128, 32)
    (msg,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "data.height=128" in msg and "data.height=64" in msg and "ck.json" in msg
    assert EvalSettings.for_checkpoint(eval_settings(cfg), {"data": {"height": 64}}, {"data"}).height == 128
    assert EvalSettings.for_checkpoint(eval_settings(cfg), None) == eval_settings(cfg)  # a pickle records nothing


@pytest.mark.parametrize("bad", [0, -3, "64", 6.5, True])
def test_a_damaged_recorded_size_is_a_checkpoint_error(bad):
    with pytest.raises(CheckpointError, match="data.height"):
        EvalSettings.for_checkpoint(eval_settings(load_config("synthcc")), {"data": {"height": bad}}, source="ck.json")
