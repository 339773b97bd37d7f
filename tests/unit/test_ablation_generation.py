"""The generation options of the Table A1 ablation: the mask region (``clothes`` | ``person``) and the
prompt source (``dataset`` | ``vocabulary``), and the signatures that keep their outputs apart."""

from __future__ import annotations

import numpy as np
import pytest

from dlcr.errors import ConfigError
from dlcr.generation import stages
from dlcr.generation.describers import create_captioner, create_summarizer
from dlcr.generation.inpainters.recolor import RecolorInpainter, parse_outfit_prompt
from dlcr.generation.inpainting import InpaintItem
from dlcr.generation.parsers import create_parser
from dlcr.generation.planning import VOCAB_KEY_PREFIX, VOCABULARY, plan_jobs, prompt_of
from dlcr.generation.runner import inpaint_signature
from dlcr.generation.worker import region_mask
from dlcr.lip import CLOTHES_LABELS, labels_mask
from dlcr.testing.toy_generation import make_toy_dataset
from dlcr.types import Outfit, Sample

HAIR, FACE, UPPER, PANTS, L_ARM, L_LEG, SHOE = 2, 13, 5, 9, 14, 16, 18


def _person(h: int = 32, w: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A label map with hair, face, arms, upper clothes, pants, legs and shoes, and a mid-grey image."""
    lab = np.zeros((h, w), np.uint8)
    lab[1:3, 5:11] = HAIR
    lab[3:7, 5:11] = FACE
    lab[7:16, 4:12] = UPPER
    lab[7:14, 2:4] = L_ARM
    lab[16:24, 4:12] = PANTS
    lab[24:29, 4:12] = L_LEG
    lab[29:32, 4:12] = SHOE
    rng = np.random.default_rng(0)
    img = rng.integers(90, 160, (h, w, 3)).astype(np.uint8)
    return img, lab


def _job(prompt: str, seed: int = 3):
    from dlcr.generation.planning import Job

    return Job(job_id="j" * 16, kind="train", dataset="toy", source="a.png", source_clothes_key="k", pid=0,
               target_clothes_key="t", variant=0, partition=0, prompt=prompt, seed=seed, generator="recolor")


PROMPT = "a person wearing red t-shirt, blue jeans, white sneakers"


@pytest.mark.parametrize("region", ["clothes", "person"])
def test_recolor_repaints_identity_cues_only_with_the_person_region(region):
    img, lab = _person()
    mask = region_mask(lab, region)
    out = RecolorInpainter()([InpaintItem(job=_job(PROMPT), image=img, mask=mask, labels=lab)])[0]
    changed = np.any(out != img, axis=2)
    background = lab == 0
    assert not changed[background].any()  # the background never changes
    clothes = labels_mask(lab, CLOTHES_LABELS)
    assert changed[clothes].mean() > 0.9
    cues = np.isin(lab, [HAIR, FACE, L_ARM, L_LEG])
    if region == "clothes":
        assert not changed[cues].any()  # the ID-preserving mask keeps skin and hair bit-identical
    else:
        assert changed[cues].mean() > 0.9  # "standard diffusion": skin and hair are repainted
        # face / arms take the upper garment's colour (red), legs the lower one's (blue)
        assert out[lab == FACE][:, 0].mean() > out[lab == FACE][:, 2].mean()
        assert out[lab == L_LEG][:, 2].mean() > out[lab == L_LEG][:, 0].mean()


def test_region_mask_and_unknown_region():
    _, lab = _person()
    assert (region_mask(lab, "person") == (lab != 0)).all()
    assert (region_mask(lab) == labels_mask(lab, CLOTHES_LABELS)).all()
    with pytest.raises(ConfigError, match="mask_region"):
        region_mask(lab, "everything")


def _samples(n: int = 6) -> tuple[list[Sample], dict[str, Outfit]]:
    samples, outfits = [], {}
    for i in range(n):
        key = f"{i // 2:03d}_{i % 2}"
        samples.append(Sample(path=f"img{i}.png", pid=i // 2, camid=i % 2, clothes_id=i, split="train",
                              clothes_key=key))
        outfits[key] = Outfit(key, "red t-shirt", "blue jeans", "white sneakers")
    return samples, outfits


def test_vocabulary_prompts_are_seeded_new_distinct_and_parseable():
    samples, outfits = _samples()
    jobs = plan_jobs(samples, outfits, k=5, seed=7, dataset="toy", num_partitions=2, prompt_source="vocabulary")
    again = plan_jobs(samples, outfits, k=5, seed=7, dataset="toy", num_partitions=2, prompt_source="vocabulary")
    other = plan_jobs(samples, outfits, k=5, seed=8, dataset="toy", num_partitions=2, prompt_source="vocabulary")
    assert [j.to_dict() for j in jobs] == [j.to_dict() for j in again]  # seeded
    assert [j.prompt for j in jobs] != [j.prompt for j in other]
    assert len(jobs) == 5 * len(samples)
    own = {s.path: prompt_of(outfits[s.clothes_key]) for s in samples}
    dataset_prompts = {prompt_of(o) for o in outfits.values()}
    for s in samples:
        mine = [j for j in jobs if j.source == s.path]
        assert len({j.prompt for j in mine}) == 5 and len({j.job_id for j in mine}) == 5
        assert [j.partition for j in mine] == [0, 0, 1, 1, 1]
        for j in mine:
            assert j.prompt != own[s.path] and j.prompt not in dataset_prompts  # never the dataset's outfits
            assert j.target_clothes_key.startswith(VOCAB_KEY_PREFIX)
            styles = parse_outfit_prompt(j.prompt)
            assert set(styles) == {"upper", "lower", "footwear"}
            assert all(st.colour is not None for st in styles.values())
    # every garment word of the vocabulary is one the recolor backend places on its part
    for part in ("upper", "lower", "footwear"):
        for g in VOCABULARY[part]:
            assert part in parse_outfit_prompt(f"a person wearing black {g}")


def test_vocabulary_draw_skips_the_images_own_outfit():
    from dlcr.generation import planning

    samples, outfits = _samples(2)
    first = [planning.vocabulary_prompt(planning.image_rng(0, "toy", "vocabulary:" + samples[0].path))]
    outfits = {k: first[0] for k in outfits}  # the image's own outfit is the first prompt its seed would draw
    jobs = plan_jobs(samples, outfits, k=3, seed=0, dataset="toy", num_partitions=1, prompt_source="vocabulary")
    assert first[0] not in {j.prompt for j in jobs if j.source == samples[0].path}
    with pytest.raises(ConfigError, match="prompt source"):
        plan_jobs(samples, outfits, k=1, prompt_source="llm")


@pytest.fixture()
def toy(tmp_path):
    samples, _, images, labels = make_toy_dataset(tmp_path / "data", n_persons=2, outfits_per_person=2,
                                                  height=64, width=32)
    work = tmp_path / "work"
    stages.run_masks(create_parser("folder", labels_dir=labels), samples, images, work)
    stages.run_describe(samples, images, work, captioner=create_captioner("rule"),
                        summarizer=create_summarizer("vote"))
    return samples, images, work


def _plan(samples, work, **kw):
    return stages.run_plan(samples, work, k=1, seed=0, allow_same_person=True, num_partitions=1, dataset="toy",
                           generator="recolor", **kw)


def test_plan_signature_refuses_another_prompt_source(toy):
    samples, _, work = toy
    dataset_ids = [j.job_id for j in _plan(samples, work)]
    with pytest.raises(ConfigError, match=r"prompt_source: unset -> \"vocabulary\""):
        _plan(samples, work, prompt_source="vocabulary")
    vocab = _plan(samples, work, prompt_source="vocabulary", overwrite=True)
    assert not set(dataset_ids) & {j.job_id for j in vocab}  # other targets, other job ids
    assert _plan(samples, work, prompt_source="vocabulary").signature == "same"
    with pytest.raises(ConfigError, match=r"prompt_source: \"vocabulary\" -> unset"):
        _plan(samples, work)


def test_inpaint_signature_refuses_another_mask_region(toy):
    samples, images, work = toy
    jobs = _plan(samples, work)

    def inpaint(**kw):
        return stages.run_inpaint(work, images, backend="recolor", backend_options={}, **kw)

    rep = inpaint()
    assert rep.generated == len(jobs)
    with pytest.raises(ConfigError, match=r"mask_region: unset -> \"person\""):
        inpaint(mask_region="person")
    assert inpaint(mask_region="person", overwrite=True).generated == len(jobs)
    assert inpaint(mask_region="person").generated == 0  # same region: resumes
    with pytest.raises(ConfigError, match="mask_region"):
        inpaint(mask_region="face")
    # the default region's signature is the one made before the option existed (old outputs resume)
    base = inpaint_signature("recolor", {}, jobs, work / stages.MASKS)
    assert "mask_region" not in base
    assert inpaint_signature("recolor", {}, jobs, work / stages.MASKS, mask_region="person")["mask_region"] == "person"
