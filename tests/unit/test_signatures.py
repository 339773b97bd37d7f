"""Generation signatures: every stage refuses to resume outputs made with other settings.

For each stage: a run, a re-run with the same settings (resumes, nothing redone), a re-run with a
changed output-affecting setting (one-line ConfigError naming the difference and the way out) and
``overwrite=True`` (the old outputs are replaced). The diffusion settings run the ``tiny`` /
``diffusers`` backends on the tiny offline pipeline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dlcr.errors import ConfigError
from dlcr.generation import stages
from dlcr.generation.describe import VoteSummarizer
from dlcr.generation.describe_tables import read_outfits
from dlcr.generation.describers import create_captioner, create_summarizer
from dlcr.generation.inpainters import INPAINTERS
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.outputs import read_manifest
from dlcr.generation.parsers import create_parser
from dlcr.generation.parsing import ParseReport
from dlcr.generation.planning import plan_jobs, write_jobs
from dlcr.generation.runner import inpaint_signature
from dlcr.generation.signature import backend_signature, object_signature
from dlcr.generation.signature_record import check_signature, read_signature, recorded_hash, signature_file
from dlcr.io.tables import read_table
from dlcr.testing.toy_generation import make_toy_dataset
from dlcr.types import Outfit

WHAT_TO_DO = "use a new --work folder, or pass --overwrite to replace its"


@pytest.fixture()
def toy(tmp_path):
    """4 images (2 persons x 2 outfits) with ground-truth label maps, masks parsed into work/masks."""
    samples, outfits, images, labels = make_toy_dataset(tmp_path / "data", n_persons=2, outfits_per_person=2,
                                                        height=64, width=32)  # fmt: skip
    work = tmp_path / "work"
    stages.run_masks(create_parser("folder", labels_dir=labels), samples, images, work)
    return samples, outfits, images, labels, work


def _plan(samples, outfits, work, k=1, generator="recolor"):
    jobs = plan_jobs(samples, outfits, k=k, seed=0, dataset="toy", generator=generator, allow_same_person=True)
    write_jobs(Path(work) / stages.JOBS, jobs)
    return jobs


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and WHAT_TO_DO in msg
    return msg


# --------------------------------------------------------------------------- backend signatures
def test_backend_signature_fills_defaults_drops_neutral_options_and_resolves_dtype(tmp_path):
    tiny = backend_signature(INPAINTERS, "tiny", {"device": "cpu", "max_batch": 4, "guidance_scale": 3.0})
    opts = tiny["options"]
    # defaults of make_tiny_inpainter and of the class it builds (DiffusersInpainter) are filled in
    assert opts["steps"] == 2 and opts["height"] == 64 and opts["scheduler"] == "ddim"
    assert opts["guidance_scale"] == 3.0 and opts["negative_prompt"] == "" and opts["guidance_weight"] == 1.0
    assert not {"device", "max_batch", "local_files_only", "cache_dir"} & set(opts)
    assert tiny["dtype"] == "float32" and tiny["tiny_builder"]  # fp32 on this CPU
    same = backend_signature(INPAINTERS, "tiny", {"device": "cpu", "max_batch": 1, "guidance_scale": 3.0})
    assert same == tiny  # device and batch size do not change pixels
    full = backend_signature(INPAINTERS, "diffusers", {"model": "some/hub-id"})
    assert full["options"]["steps"] == 50 and full["models"]["model"] == {"model": "some/hub-id", "revision": None}
    assert backend_signature(INPAINTERS, "diffusers", {"model": "some/hub-id", "dtype": "fp16"})["dtype"] == "float16"


def test_backend_signature_fingerprints_model_folders_and_records_output_version(tmp_path, monkeypatch):
    model = tmp_path / "model"
    (model / "scheduler").mkdir(parents=True)
    (model / "scheduler" / "scheduler_config.json").write_text('{"beta_end": 0.012}')
    (model / "unet.safetensors").write_bytes(b"x" * 10)
    a = backend_signature(INPAINTERS, "diffusers", {"model": str(model)})
    (model / "scheduler" / "scheduler_config.json").write_text('{"beta_end": 0.02}')
    b = backend_signature(INPAINTERS, "diffusers", {"model": str(model)})
    assert a["models"]["model"]["config_sha256"] != b["models"]["model"]["config_sha256"]
    from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter
    from dlcr.generation.inpainters.recolor import RecolorInpainter

    assert a.get("output_version") == getattr(DiffusersInpainter, "output_version", None)

    monkeypatch.setattr(RecolorInpainter, "output_version", 2, raising=False)
    assert backend_signature(INPAINTERS, "recolor", {})["output_version"] == 2


def test_objects_built_by_the_registries_carry_their_options():
    rule = create_captioner("rule", min_pixels=20)
    assert object_signature(rule)["options"] == {"min_pixels": 20}
    hand_made = object_signature(VoteSummarizer())
    assert hand_made["backend"] == "vote" and hand_made["class"].endswith("VoteSummarizer")
    # the prompt of a captioner is part of its signature (nothing is loaded to compute it)
    from dlcr.generation.describers import CAPTIONERS

    p1 = backend_signature(CAPTIONERS, "hf", {"model": "org/vlm"})
    p2 = backend_signature(CAPTIONERS, "hf", {"model": "org/vlm", "prompt": "Describe the clothes."})
    assert p1["options"]["prompt"] != p2["options"]["prompt"]


def test_check_signature_rules(tmp_path):
    path = tmp_path / "signature.json"
    removed = []
    assert check_signature(path, {"a": 1}, what="things", committed=0) == "new"
    assert read_signature(path) == {"a": 1}
    assert check_signature(path, {"a": 1}, what="things", committed=5) == "same"
    with pytest.raises(ConfigError, match=r"things in .* were made with other settings \(a: 1 -> 2\)") as e:
        check_signature(path, {"a": 2}, what="things", committed=5)
    assert "replace its 5 committed outputs" in _one_line(e)
    assert check_signature(path, {"a": 2}, what="things", committed=5, overwrite=True,
                           remove=lambda: removed.append(1)) == "overwritten"  # fmt: skip
    assert removed == [1] and read_signature(path) == {"a": 2}
    path.unlink()  # outputs of an older dlcr: no signature at all
    with pytest.raises(ConfigError, match="have no signature"):
        check_signature(path, {"a": 2}, what="things", committed=3)
    assert signature_file(tmp_path / "jobs.parquet") == tmp_path / "jobs.signature.json"


# --------------------------------------------------------------------------- masks
def test_masks_refuse_another_parser_model_or_setting_and_overwrite_replaces(toy, tmp_path):
    samples, _, images, labels, work = toy
    assert read_signature(signature_file(work / stages.MASKS))["parser"]["backend"] == "folder"
    again = stages.run_masks(create_parser("folder", labels_dir=labels), samples, images, work)
    assert (again.done, again.skipped_existing) == (0, 4)  # resumed, nothing parsed
    other = tmp_path / "other_labels"
    shutil.copytree(labels, other)
    (other / "extra.txt").write_text("another model folder")
    with pytest.raises(ConfigError, match=r"label maps .*labels_dir") as e:
        stages.run_masks(create_parser("folder", labels_dir=other), samples, images, work)
    assert "replace its 4 committed outputs" in _one_line(e)
    with pytest.raises(ConfigError, match=r"label_set: \"lip\" -> \"atr\""):
        stages.run_masks(create_parser("folder", labels_dir=labels, label_set="atr"), samples, images, work)
    with pytest.raises(ConfigError, match=r"backend: \"folder\" -> \"synthcc\""):
        stages.run_masks(create_parser("synthcc"), samples, images, work)
    rep = stages.run_masks(create_parser("folder", labels_dir=other), samples, images, work, overwrite=True)
    assert (rep.replaced, rep.done, rep.skipped_existing) == (4, 4, 0)
    assert "replaced 4 label maps" in rep.summary()
    assert stages.run_masks(create_parser("folder", labels_dir=other), samples, images, work).done == 0


def test_parse_report_summary_is_one_line_with_a_few_examples():
    paths = tuple(f"train/{i:04d}.png" for i in range(500))
    rep = ParseReport(total=900, done=900, skipped_existing=0, empty=500, empty_paths=paths, table="t", parser="p")
    line = rep.summary()
    assert "\n" not in line and len(line) < 200
    assert "e.g. train/0000.png, train/0001.png, train/0002.png, and 497 more" in line


# --------------------------------------------------------------------------- describe
def test_describe_refuses_another_captioner_summariser_or_masks(toy, tmp_path):
    samples, _, images, labels, work = toy

    def describe(cap=None, summ=None, **kw):
        return stages.run_describe(samples, images, work, captioner=cap or create_captioner("rule"),
                                   summarizer=summ or create_summarizer("vote"), **kw)  # fmt: skip

    first = describe()
    assert first.captioned == 4
    again = describe()
    assert (again.captioned, again.reused, again.summarized) == (0, 4, 0)
    with pytest.raises(ConfigError, match=r"captions in .* \(captioner.options.min_pixels: 10 -> 50\)") as e:
        describe(cap=create_captioner("rule", min_pixels=50))
    assert "replace its 4 committed outputs" in _one_line(e)

    class OtherSummarizer(VoteSummarizer):
        model = "other-vote"

    with pytest.raises(ConfigError, match=r"outfits in .*summarizer"):
        describe(summ=OtherSummarizer())
    rep = describe(cap=create_captioner("rule", min_pixels=50), overwrite=True)
    assert rep.captioned == 4 and rep.replaced == ("captions.parquet", "outfits.parquet")
    # new masks make the captions (and what follows) stale
    other = tmp_path / "other_labels"
    shutil.copytree(labels, other)
    (other / "extra.txt").write_text("x")
    stages.run_masks(create_parser("folder", labels_dir=other), samples, images, work, overwrite=True)
    with pytest.raises(ConfigError, match=r"captions in .*inputs.masks"):
        describe(cap=create_captioner("rule", min_pixels=50))


def test_describe_refuses_another_captioner_prompt(toy, tmp_path):
    """The tiny captioner (real transformers code, random weights) with another prompt."""
    pytest.importorskip("transformers")
    samples, _, images, _, work = toy
    cache = tmp_path / "tiny"
    cap = create_captioner("tiny", cache_dir=cache, max_new_tokens=4)
    stages.run_describe(samples, images, work, captioner=cap, summarizer=create_summarizer("vote"))
    other = create_captioner("tiny", cache_dir=cache, max_new_tokens=4, prompt="Describe the outfit.")
    with pytest.raises(ConfigError, match=r"captioner.options.prompt"):
        stages.run_describe(samples, images, work, captioner=other, summarizer=create_summarizer("vote"))


# --------------------------------------------------------------------------- plan
def test_plan_refuses_other_settings_and_new_outfits(toy, tmp_path):
    samples, _, images, _, work = toy
    stages.run_describe(samples, images, work, captioner=create_captioner("rule"),
                        summarizer=create_summarizer("vote"))  # fmt: skip

    def plan(k=1, **kw):
        return stages.run_plan(samples, work, k=k, seed=0, allow_same_person=True, num_partitions=1,
                               dataset="toy", generator="recolor", **kw)  # fmt: skip

    jobs = plan()
    assert [j.job_id for j in plan()] == [j.job_id for j in jobs]  # same settings: same plan
    with pytest.raises(ConfigError, match=r"^jobs of the plan jobs.parquet in .* were made with other settings "
                                          r"\(k: 1 -> 2\)") as e:
        plan(k=2)
    assert "replace its 4 committed outputs" in _one_line(e)
    assert len(plan(k=2, overwrite=True)) == 8
    stages.run_describe(samples, images, work, captioner=create_captioner("rule", min_pixels=50),
                        summarizer=create_summarizer("vote"), overwrite=True)  # fmt: skip
    with pytest.raises(ConfigError, match=r"inputs.outfits"):
        plan(k=2)


# --------------------------------------------------------------------------- inpaint (recolor)
def test_inpaint_refuses_other_options_or_plan_and_overwrite_replaces(toy):
    samples, outfits, images, _, work = toy
    _plan(samples, outfits, work, k=2)

    def inpaint(opts=None, **kw):
        return stages.run_inpaint(work, images, backend="recolor", backend_options=opts or {}, **kw)

    first = inpaint()
    assert first.generated == 8
    sig = recorded_hash(work / stages.GENERATED)
    assert {r.signature for r in read_manifest(work / stages.GENERATED)} == {sig}
    again = inpaint()
    assert (again.already_committed, again.generated) == (8, 0)
    with pytest.raises(ConfigError, match=r"generated images in .*\(inpainter.options.jitter: 0.02 -> 0.1\)") as e:
        inpaint({"jitter": 0.1})
    assert "replace its 8 committed outputs" in _one_line(e)
    # another plan (here: other prompts for the same job ids) never resumes into the old images
    changed = {k: Outfit(k, "red shirt", "", "") for k in outfits}
    _plan(samples, changed, work, k=2)
    with pytest.raises(ConfigError, match=r"inputs.plan"):
        inpaint()
    rep = inpaint({"jitter": 0.1}, overwrite=True)
    assert (rep.already_committed, rep.generated, rep.signature) == (0, 8, "overwritten")
    records = read_manifest(work / stages.GENERATED)
    assert {r.model for r in records} == {"recolor(shading=1,jitter=0.1)"}
    assert {r.prompt for r in records} == {"a person wearing red shirt"}
    assert {r.signature for r in records} == {recorded_hash(work / stages.GENERATED)} != {sig}


def test_runner_command_line_checks_the_signature(toy, capsys):
    from cli_run import cli_status as main
    from dlcr.testing.toy_generation import runner_argv

    samples, outfits, images, _, work = toy
    _plan(samples, outfits, work)
    argv = runner_argv(work / stages.JOBS, images, work / stages.MASKS, work / "out")
    assert main(argv) == 0 and "generated 4" in capsys.readouterr().out
    assert main([*argv, "--option", "shading=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: generated images in") and "inpainter.options.shading: 1.0 -> 0.5" in err
    assert main([*argv, "--option", "shading=0.5", "--overwrite"]) == 0
    assert "replaced the earlier outputs; planned 4, already committed 0, generated 4" in capsys.readouterr().out


def test_inpaint_refuses_outputs_without_a_signature(toy):
    samples, outfits, images, _, work = toy
    _plan(samples, outfits, work)
    stages.run_inpaint(work, images, backend="recolor", backend_options={})
    signature_file(work / stages.GENERATED).unlink()  # as an older dlcr left it
    with pytest.raises(ConfigError, match="have no signature"):
        stages.run_inpaint(work, images, backend="recolor", backend_options={})


# --------------------------------------------------------------------------- inpaint (diffusion)
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("diffusers")
    from dlcr.generation.tiny_models.diffusion import tiny_pipeline_path

    return tiny_pipeline_path(tmp_path_factory.mktemp("tiny-sd"))


def test_diffusion_settings_refuse_before_any_model_is_loaded(toy, tiny_model, tmp_path, monkeypatch):
    samples, outfits, images, _, work = toy
    _plan(samples, outfits, work, generator="diffusers")
    base = {"model": str(tiny_model), "steps": 2, "height": 64, "width": 32, "scheduler": "ddim",
            "guidance_scale": 7.5, "negative_prompt": "", "device": "cpu"}

    def inpaint(**changes):
        return stages.run_inpaint(work, images, backend="diffusers", backend_options={**base, **changes},
                                  batch_size=4)  # fmt: skip

    first = inpaint()
    assert first.generated == 4
    assert read_signature(signature_file(work / stages.GENERATED))["inpainter"]["dtype"] == "float32"
    import dlcr.generation.inpainters as inpainting

    def no_model(*a, **kw):
        raise AssertionError("a model was loaded before the signature check")

    monkeypatch.setattr(inpainting.INPAINTERS, "create", no_model)
    resumed = inpaint(device="cpu", max_batch=2)  # neither changes pixels: resumes, loads nothing
    assert (resumed.already_committed, resumed.generated) == (4, 0)
    other_model = tmp_path / "other-model"
    shutil.copytree(tiny_model, other_model)
    cfg = other_model / "scheduler" / "scheduler_config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "beta_end": 0.02}))
    for change, named in [
        ({"steps": 3}, "steps: 2 -> 3"),
        ({"scheduler": "euler"}, 'scheduler: "ddim" -> "euler"'),
        ({"guidance_scale": 3.0}, "guidance_scale: 7.5 -> 3.0"),
        ({"negative_prompt": "blurry"}, 'negative_prompt: "" -> "blurry"'),
        ({"height": 72}, "height: 64 -> 72"),
        ({"width": 40}, "width: 32 -> 40"),
        ({"model": str(other_model)}, "inpainter.models.model"),
        ({"dtype": "float16"}, 'inpainter.dtype: "float32" -> "float16"'),
    ]:
        with pytest.raises(ConfigError) as e:
            inpaint(**change)
        assert named in _one_line(e), (change, str(e.value))


def test_discriminator_and_its_weight_are_part_of_the_signature(tmp_path, tiny_model):
    disc = tmp_path / "disc.safetensors"
    disc.write_bytes(b"not loaded to compute a signature")
    opts = {"model": str(tiny_model), "discriminator": str(disc)}
    a = inpaint_signature("diffusers", {**opts, "guidance_weight": 1.0}, [], tmp_path)
    b = inpaint_signature("diffusers", {**opts, "guidance_weight": 2.0}, [], tmp_path)
    path = tmp_path / "signature.json"
    check_signature(path, a, what="generated images", committed=0)
    with pytest.raises(ConfigError, match=r"guidance_weight: 1.0 -> 2.0"):
        check_signature(path, b, what="generated images", committed=3)
    assert a["inpainter"]["models"]["discriminator"]["sha256"]
    disc.write_bytes(b"another discriminator")
    c = inpaint_signature("diffusers", {**opts, "guidance_weight": 1.0}, [], tmp_path)
    with pytest.raises(ConfigError, match=r"models.discriminator.sha256"):
        check_signature(path, c, what="generated images", committed=3)


def test_tiny_backend_steps_and_size_refuse(toy, tiny_model):
    samples, outfits, images, _, work = toy
    _plan(samples[:2], outfits, work, generator="tiny")
    opts = {"cache_dir": str(tiny_model.parent)}
    rep = stages.run_inpaint(work, images, backend="tiny", backend_options=opts)
    assert rep.generated == 2
    with pytest.raises(ConfigError, match="steps: 2 -> 4"):
        stages.run_inpaint(work, images, backend="tiny", backend_options={**opts, "steps": 4})
    with pytest.raises(ConfigError, match="height: 64 -> 128"):
        stages.run_inpaint(work, images, backend="tiny", backend_options={**opts, "height": 128})
    rep = stages.run_inpaint(work, images, backend="tiny", backend_options={**opts, "steps": 4}, overwrite=True)
    assert (rep.generated, rep.already_committed) == (2, 0)


# --------------------------------------------------------------------------- the real command line
def _cli_world(tmp_path, capsys, monkeypatch):
    """A 4-id synthcc world in the current folder; ``run(*argv) -> (exit code, stdout, stderr)`` of the
    real entry point, and the ``--set`` options of the fast offline backends."""
    from dlcr.cli.main import main
    from dlcr.synth.writer import render_world

    render_world(tmp_path / "data", ids=4, seed=0, height=32, width=16)
    monkeypatch.chdir(tmp_path)
    sets = ["-c", "synthcc", "--set", "data.root=data", "--set", "generate.parser=synthcc",
            "--set", "generate.backend=recolor", "--set", "generate.k=1"]  # fmt: skip

    def run(*argv):
        code = 0
        try:
            main([*argv])
        except SystemExit as e:
            code = int(e.code or 0)
        return (code, *capsys.readouterr())

    return run, sets


def test_cli_inpaint_with_other_settings_is_one_error_line_and_exit_2(tmp_path, capsys, monkeypatch):
    run, sets = _cli_world(tmp_path, capsys, monkeypatch)

    code, out, err = run("generate", "all", *sets, "--work", "w", "--no-queries")
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.startswith(("masks:", "describe:"))]
    assert len(lines) == 2 and all(len(ln) < 300 for ln in lines)  # one short line each, not a repr
    n = len(read_table(tmp_path / "w" / "generated" / MANIFEST))
    code, out, err = run("generate", "inpaint", *sets, "--work", "w")
    assert code == 0 and f"already committed {n}, generated 0" in out
    code, out, err = run("generate", "inpaint", *sets, "--set", "generate.backend=tiny", "--work", "w")
    assert code == 2 and err == ("error: jobs.parquet was planned for backend 'recolor', not 'tiny'; re-run "
                                 "`dlcr generate plan --set generate.backend=tiny --overwrite`\n")
    code, out, err = run("generate", "plan", *sets, "--set", "generate.k=2", "--work", "w")
    assert code == 2 and "(k: 1 -> 2)" in err and err.startswith("error: jobs of the plan jobs.parquet in ")
    code, out, err = run("generate", "plan", *sets, "--set", "generate.k=2", "--work", "w", "--overwrite")
    assert code == 0, err
    assert out.startswith(f"plan: replaced the earlier plan; {2 * n} jobs in w/jobs.parquet"), out
    code, out, err = run("generate", "plan", *sets, "--set", "generate.k=2", "--work", "w")
    assert code == 0 and out.startswith(f"plan: {2 * n} jobs"), out  # the same plan: nothing replaced
    code, out, err = run("generate", "inpaint", *sets, "--set", "generate.k=2", "--work", "w")
    assert code == 2 and "inputs.plan" in err
    code, out, err = run("generate", "inpaint", *sets, "--set", "generate.k=2", "--work", "w", "--overwrite")
    assert code == 0 and f"generated {2 * n}" in out
    assert len(read_outfits(tmp_path / "w")) > 0


# --------------------------------------------------------------------------- stale inputs, backends, failures
def _describe(samples, images, work, min_pixels=10, **kw):
    return stages.run_describe(samples, images, work, captioner=create_captioner("rule", min_pixels=min_pixels),
                               summarizer=create_summarizer("vote"), **kw)  # fmt: skip


def _run_plan(samples, work, **kw):
    return stages.run_plan(samples, work, k=1, seed=0, allow_same_person=True, num_partitions=1, dataset="toy",
                           generator="recolor", **kw)  # fmt: skip


def test_stale_inputs_are_refused_along_the_whole_chain(toy, tmp_path):
    samples, _, images, labels, work = toy
    _describe(samples, images, work)
    _run_plan(samples, work)
    stages.run_plan_queries(samples, work, l=1, seed=0, dataset="toy", generator="recolor")
    stages.run_inpaint(work, images, backend="recolor", backend_options={})

    def inpaint(**kw):
        return stages.run_inpaint(work, images, backend="recolor", backend_options={}, **kw)

    # describe replaced with another captioner, the plans not re-made: nothing may resume into them
    _describe(samples, images, work, min_pixels=50, overwrite=True)
    for queries, name, stage in [(False, "jobs.parquet", "plan"), (True, "query_jobs.parquet", "queries --plan-only")]:
        for overwrite in (False, True):
            with pytest.raises(ConfigError) as e:
                inpaint(queries=queries, overwrite=overwrite)
            assert str(e.value) == (f"{name} is out of date: outfits.parquet changed since it was made; "
                                    f"re-run `dlcr generate {stage}` (with --overwrite)")
    assert read_manifest(work / stages.GENERATED)  # nothing removed
    _run_plan(samples, work, overwrite=True)
    assert inpaint(overwrite=True).signature in ("same", "overwritten")
    # new masks: the outfits (made from captions of the old masks) may not be planned from
    other = tmp_path / "other_labels"
    shutil.copytree(labels, other)
    (other / "extra.txt").write_text("x")
    stages.run_masks(create_parser("folder", labels_dir=other), samples, images, work, overwrite=True)
    stale = ("captions.parquet is out of date: masks changed since it was made; "
             "re-run `dlcr generate describe` (with --overwrite)")  # fmt: skip
    for call in (lambda: _run_plan(samples, work, overwrite=True),
                 lambda: stages.run_plan_queries(samples, work, l=1, seed=0, dataset="toy", generator="recolor"),
                 lambda: inpaint(overwrite=True)):  # fmt: skip
        with pytest.raises(ConfigError) as e:
            call()
        assert str(e.value) == stale
    _describe(samples, images, work, min_pixels=50, overwrite=True)
    _run_plan(samples, work, overwrite=True)
    assert inpaint(overwrite=True).generated > 0


def test_a_plan_for_another_backend_is_refused(toy):
    samples, outfits, images, _, work = toy
    _plan(samples, outfits, work, generator="recolor")
    with pytest.raises(ConfigError) as e:
        stages.run_inpaint(work, images, backend="diffusers", backend_options={"model": "x"})
    assert str(e.value) == ("jobs.parquet was planned for backend 'recolor', not 'diffusers'; re-run "
                            "`dlcr generate plan --set generate.backend=diffusers --overwrite`")
    assert not (work / stages.GENERATED).exists()


def test_missing_inputs_name_the_file_then_what_to_run(tmp_path):
    from dlcr.errors import InputError

    with pytest.raises(InputError) as e:
        stages.run_inpaint(tmp_path, tmp_path, backend="recolor", backend_options={})
    assert str(e.value) == f"the job plan {tmp_path / stages.JOBS} not found; run `dlcr generate plan` first"


@pytest.mark.parametrize("driver", ["local", "torchrun", "ray"])
def test_overwrite_with_a_model_that_fails_to_load_keeps_the_outputs(toy, monkeypatch, driver):
    import dlcr.generation.inpainters as inpainting
    import dlcr.generation.ray_driver as ray_backend
    from dlcr.errors import CheckpointError
    from dlcr.generation.worker import GenerationWorker, run_local

    samples, outfits, images, _, work = toy
    _plan(samples, outfits, work, k=2)
    out = work / stages.GENERATED
    stages.run_inpaint(work, images, backend="recolor", backend_options={})
    before = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    sig = recorded_hash(out)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    builds = []
    real_create = inpainting.INPAINTERS.create

    def create(name, **kw):
        builds.append(kw)
        if kw.get("jitter") == 0.5:
            raise CheckpointError("cannot load the model")
        return real_create(name, **kw)

    def fake_ray(jobs, *, worker_kwargs, batch_size, **_):
        return run_local(GenerationWorker(**worker_kwargs), jobs, batch_size)

    monkeypatch.setattr(inpainting.INPAINTERS, "create", create)
    monkeypatch.setattr(ray_backend, "run_with_ray", fake_ray)

    def inpaint(opts, **kw):
        return stages.run_inpaint(work, images, backend="recolor", backend_options=opts, driver=driver, **kw)

    with pytest.raises(CheckpointError, match="cannot load the model"):
        inpaint({"jitter": 0.5}, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*.png")) == before and recorded_hash(out) == sig
    assert len(read_manifest(out)) == len(before) == 8
    builds.clear()
    assert inpaint({}, overwrite=True).generated == 0 and builds == []  # a plain resume loads nothing
    rep = inpaint({"jitter": 0.1}, overwrite=True)
    assert (rep.signature, rep.generated) == ("overwritten", 8)
    assert len(builds) == (2 if driver == "ray" else 1)  # ray: a probe in the driver, then the actor's


def test_cli_backend_specs_have_the_signature_of_the_backends_built_from_them(tmp_path):
    from dlcr.cli.common import get_config
    from dlcr.cli.generate import _describer_specs, _describers, _parser, _parser_spec, _spec_signature
    from dlcr.generation.describers import CAPTIONERS, SUMMARIZERS
    from dlcr.generation.parsers import PARSERS

    (tmp_path / "labels").mkdir()
    for extra in ([], ["generate.parser=folder", f"generate.parser_model={tmp_path / 'labels'}"]):
        cfg = get_config("synthcc", extra)
        assert _spec_signature(PARSERS, _parser_spec(cfg)) == object_signature(_parser(cfg))
        (cspec, sspec), (cap, summ) = _describer_specs(cfg), _describers(cfg)
        assert _spec_signature(CAPTIONERS, cspec) == object_signature(cap)
        assert _spec_signature(SUMMARIZERS, sspec) == object_signature(summ)


def test_cli_masks_and_describe_refuse_before_building_a_backend(tmp_path, capsys, monkeypatch):
    from dlcr.generation.describers import CAPTIONERS, SUMMARIZERS
    from dlcr.generation.parsers import PARSERS

    run, sets = _cli_world(tmp_path, capsys, monkeypatch)
    (tmp_path / "labels").mkdir()

    code, out, err = run("generate", "all", *sets, "--work", "w", "--no-queries")
    assert code == 0, err

    def never(*a, **kw):
        raise AssertionError("a backend was built before the refusal")

    for registry in (PARSERS, CAPTIONERS, SUMMARIZERS):
        monkeypatch.setattr(registry, "create", never)
    code, out, err = run("generate", "all", *sets, "--set", "generate.parser=folder",
                         "--set", "generate.parser_model=labels", "--work", "w")  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: label maps in ")
    assert 'parser.backend: "synthcc" -> "folder"' in err and WHAT_TO_DO in err
    code, out, err = run("generate", "describe", *sets, "--set", "generate.captioner=tiny", "--work", "w")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: captions in ")
    assert 'captioner.backend: "rule" -> "tiny"' in err and WHAT_TO_DO in err
    code, out, err = run("generate", "describe", *sets, "--set", "generate.summarizer=tiny", "--work", "w")
    assert code == 2 and err.startswith("error: outfits in ") and 'summarizer.backend: "vote" -> "tiny"' in err
