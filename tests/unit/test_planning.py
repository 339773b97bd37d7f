import logging
from collections import Counter
from pathlib import Path

import pytest

from dlcr.errors import InputError
from dlcr.generation.planning import (
    Job,
    make_job_id,
    partition_of,
    plan_jobs,
    plan_query_jobs,
    read_jobs,
    write_jobs,
)
from dlcr.types import Outfit, Sample


def _world(n_persons=6, outfits_per_person=2, images_per_outfit=2):
    samples, outfits = [], {}
    for pid in range(n_persons):
        for c in range(outfits_per_person):
            key = f"{pid:03d}_{c}"
            outfits[key] = Outfit(key, f"colour{pid}{c} shirt", "blue jeans", "white sneakers")
            for i in range(images_per_outfit):
                samples.append(
                    Sample(
                        path=f"d/train/{key}_{i}.jpg",
                        pid=pid,
                        camid=i,
                        clothes_id=pid * 10 + c,
                        split="train",
                        clothes_key=key,
                    )
                )
    return samples, outfits


def test_targets_are_k_distinct_other_outfits_never_same_person():
    samples, outfits = _world()
    jobs = plan_jobs(samples, outfits, k=5, seed=3)
    assert len(jobs) == 5 * len(samples)
    by_src: dict[str, list[Job]] = {}
    for j in jobs:
        by_src.setdefault(j.source, []).append(j)
    for s in samples:
        js = by_src[s.path]
        targets = [j.target_clothes_key for j in js]
        assert len(set(targets)) == 5
        assert [j.variant for j in js] == list(range(5))
        assert s.clothes_key not in targets
        assert not any(t.startswith(f"{s.pid:03d}_") for t in targets)  # same person's outfits banned
        assert all(j.prompt == outfits[j.target_clothes_key].prompt for j in js)
        assert all(j.pid == s.pid and j.source_clothes_key == s.clothes_key and j.kind == "train" for j in js)


def test_allow_same_person_draws_own_persons_other_outfit_but_never_own():
    samples, outfits = _world(n_persons=2, outfits_per_person=3, images_per_outfit=1)
    # 6 outfits: 5 candidates when the same person is allowed, 3 when not
    jobs = plan_jobs(samples, outfits, k=5, allow_same_person=True)
    for s in samples:
        targets = {j.target_clothes_key for j in jobs if j.source == s.path}
        assert targets == set(outfits) - {s.clothes_key}
    with pytest.raises(InputError, match="only 3 eligible"):
        plan_jobs(samples, outfits, k=5)


def test_too_few_candidates_clamps_with_warning_when_not_strict(caplog):
    samples, outfits = _world(n_persons=2, outfits_per_person=2, images_per_outfit=1)
    with caplog.at_level(logging.WARNING, logger="dlcr"):
        jobs = plan_jobs(samples, outfits, k=5, strict=False)
    assert len(jobs) == 2 * len(samples)  # 2 outfits of the other person
    assert "only 2 eligible" in caplog.text


def test_plan_is_deterministic_and_seed_dependent():
    samples, outfits = _world()
    a = plan_jobs(samples, outfits, k=4, seed=1, dataset="x")
    b = plan_jobs(samples, outfits, k=4, seed=1, dataset="x")
    c = plan_jobs(samples, outfits, k=4, seed=2, dataset="x")
    assert a == b
    assert [j.target_clothes_key for j in a] != [j.target_clothes_key for j in c]


def test_adding_images_does_not_change_other_images_targets():
    # more images of the same outfits (the candidate lists stay the same)
    samples, outfits = _world(images_per_outfit=3)
    first = [s for s in samples if s.path.endswith("_0.jpg")]
    full = plan_jobs(samples, outfits, k=4, seed=7)
    part = plan_jobs(first, outfits, k=4, seed=7)
    keep = {s.path for s in first}
    assert part == [j for j in full if j.source in keep]


def test_job_ids_and_draws_are_stable_known_values():
    # golden values: a change here breaks resumption of every existing output folder
    assert make_job_id("d", "a.jpg", "k", 0, "recolor", 0) == "b3b25fdea6b49ffa"
    assert make_job_id("prcc", "prcc/rgb/train/001/A_cropped_rgb001.jpg", "001_0", 3, "diffusers", 0) == (
        "b6bbfa3424adc40f"
    )
    samples, outfits = _world(n_persons=3, outfits_per_person=1, images_per_outfit=1)
    jobs = plan_jobs(samples, outfits, k=2, seed=0, dataset="toy")
    assert [(j.job_id, j.target_clothes_key, j.seed) for j in jobs] == [
        ("47e04fd50443c858", "001_0", 1691792981),
        ("a4562ad23b4bfdff", "002_0", 1265254234),
        ("eb57569ecc13b843", "000_0", 352774891),
        ("71a3ced6f3625977", "002_0", 1139030425),
        ("ac699a8894459af7", "001_0", 1809458908),
        ("c6646ad87d2387d1", "000_0", 647172844),
    ]
    # every field of the id matters
    ids = {
        make_job_id("d", "a.jpg", "k", 0, "recolor", 0),
        make_job_id("d", "a.jpg", "k", 1, "recolor", 0),
        make_job_id("d", "a.jpg", "k", 0, "diffusers", 0),
        make_job_id("d", "a.jpg", "k", 0, "recolor", 1),
        make_job_id("e", "a.jpg", "k", 0, "recolor", 0),
        make_job_id("d", "b.jpg", "k", 0, "recolor", 0),
        make_job_id("d", "a.jpg", "l", 0, "recolor", 0),
    }
    assert len(ids) == 7


@pytest.mark.parametrize(
    "k,parts,expected",
    [
        (10, 4, [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]),  # prefixes 2/5/7/10 as in the released schedule
        (8, 4, [0, 0, 1, 1, 2, 2, 3, 3]),
        (3, 1, [0, 0, 0]),
        (6, 3, [0, 0, 1, 1, 2, 2]),
    ],
)
def test_partitions_are_consecutive_equal_parts(k, parts, expected):
    assert [partition_of(v, k, parts) for v in range(k)] == expected


def test_jobs_carry_partitions_and_distinct_seeds():
    samples, outfits = _world()
    jobs = plan_jobs(samples, outfits, k=8, num_partitions=4)
    assert [j.partition for j in jobs[:8]] == [0, 0, 1, 1, 2, 2, 3, 3]
    seeds = [j.seed for j in jobs]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**31 for s in seeds)


def test_targets_are_drawn_uniformly():
    outfits = {f"o{i:02d}": f"outfit {i}" for i in range(10)}
    samples = [
        Sample(path=f"img{i}.jpg", pid=100 + i, camid=0, clothes_id=-1, split="train", clothes_key=f"own{i}")
        for i in range(1500)
    ]
    counts = Counter(j.target_clothes_key for j in plan_jobs(samples, outfits, k=3, seed=0))
    expected = 1500 * 3 / 10
    assert set(counts) == set(outfits)
    assert all(abs(c - expected) < 0.12 * expected for c in counts.values()), counts
    # and the variant slots are not biased either: variant 0 alone is uniform too
    first = Counter(j.target_clothes_key for j in plan_jobs(samples, outfits, k=3, seed=0) if j.variant == 0)
    assert all(abs(c - 150) < 45 for c in first.values()), first


def test_query_jobs_draw_training_outfits():
    samples, outfits = _world()
    queries = [
        Sample(
            path=f"d/query/{i}.jpg", pid=900 + i, camid=1, clothes_id=i, split="query", clothes_key=f"q{i}"
        )
        for i in range(4)
    ]
    qjobs = plan_query_jobs(queries, outfits, l=6, seed=0, dataset="d")
    assert len(qjobs) == 24
    assert all(j.kind == "query" and j.partition == 0 and j.target_clothes_key in outfits for j in qjobs)
    for q in queries:
        assert len({j.target_clothes_key for j in qjobs if j.source == q.path}) == 6
    train_ids = {j.job_id for j in plan_jobs(samples, outfits, k=4, dataset="d")}
    assert not train_ids & {j.job_id for j in qjobs}


def test_write_and_read_jobs_roundtrip(tmp_path: Path):
    samples, outfits = _world(n_persons=3)
    jobs = plan_jobs(samples, {k: o.prompt for k, o in outfits.items()}, k=3)
    write_jobs(tmp_path / "jobs.parquet", jobs)
    assert read_jobs(tmp_path / "jobs.parquet") == jobs
    with pytest.raises(InputError, match="duplicate"):
        write_jobs(tmp_path / "dup.parquet", jobs + jobs[:1])


def test_duplicate_sample_path_is_rejected():
    samples, outfits = _world(n_persons=3)
    with pytest.raises(InputError, match="listed twice"):
        plan_jobs(samples + samples[:1], outfits, k=2)


def test_outfits_without_a_garment_are_never_targets(caplog):
    samples = [Sample(path=f"p{i}.png", pid=i, camid=0, clothes_id=i, split="train", clothes_key=f"k{i}")
               for i in range(4)]  # fmt: skip
    outfits = {f"k{i}": Outfit(f"k{i}", f"red shirt {i}", "", "") for i in range(4)}
    outfits["k1"] = Outfit("k1", "", "", "")  # the describer found nothing: prompt "a person"
    outfits["k5"] = "a person"
    with caplog.at_level(logging.WARNING):
        jobs = plan_jobs(samples, outfits, k=2, seed=0, allow_same_person=True)
    assert "k1" not in {j.target_clothes_key for j in jobs} and "k5" not in {j.target_clothes_key for j in jobs}
    assert {j.prompt for j in jobs} <= {outfits[k].prompt for k in ("k0", "k2", "k3")}
    assert "2 of 5 outfits name no garment" in caplog.text
    qjobs = plan_query_jobs(samples, outfits, l=2, seed=0)
    assert {j.target_clothes_key for j in qjobs} <= {"k0", "k2", "k3"}
    with pytest.raises(InputError, match="none of the 2 outfits names a garment"):
        plan_jobs(samples, {"k1": outfits["k1"], "k5": "a person"}, k=1, allow_same_person=True)
