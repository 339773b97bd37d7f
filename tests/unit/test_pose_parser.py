"""The ``pose`` parser: geometry and labelling rules (pure numpy), then mediapipe on real photographs."""

import numpy as np
import pytest

from dlcr.errors import ConfigError
from dlcr.generation.parsers import create_parser, pose
from dlcr.generation.parsers.pose import (
    FACE,
    HAIR,
    L_ARM,
    L_LEG,
    L_SHOE,
    PANTS,
    R_ARM,
    R_LEG,
    R_SHOE,
    UPPER,
    fallback_labels,
    labels_from_pose,
    polygon_distance,
    segment_distance,
)
from dlcr.generation.parsing import parse_dataset
from dlcr.lip import CLOTHES_LABELS, clothes_mask

# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def test_segment_distance_hand_values():
    a, b = np.array([0.0, 0.0]), np.array([4.0, 0.0])
    ys = np.array([3.0, 0.0, -4.0, 1.0])
    xs = np.array([2.0, 7.0, -3.0, 4.0])
    # above the middle: 3; beyond b: 3; before a: 5 (3-4-5); above b: 1
    assert np.allclose(segment_distance(ys, xs, a, b), [3.0, 3.0, 5.0, 1.0])
    # a degenerate segment is a point
    assert np.allclose(segment_distance(np.array([3.0]), np.array([4.0]), a, a), [5.0])


def test_polygon_distance_zero_inside_edge_distance_outside():
    square = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])  # (x, y)
    ys = np.array([5.0, 5.0, 13.0, -2.0])
    xs = np.array([5.0, 12.0, 14.0, 5.0])
    # inside; 2 right of the right edge; corner (10,10) at (3,4) away; 2 above the top edge
    assert np.allclose(polygon_distance(ys, xs, square), [0.0, 2.0, 5.0, 2.0])


def test_fallback_geometry_bands_by_hand():
    person = np.zeros((120, 60), bool)
    person[10:110, 20:40] = True  # 100 rows tall, centre column 30
    lab = fallback_labels(person)
    assert (lab[~person] == 0).all()
    col = lab[:, 35]
    # band fraction of row r is (r + 0.5 - 10) / 100
    assert set(col[10:15]) == {HAIR}  # 0.005 .. 0.045
    assert set(col[15:23]) == {FACE}  # 0.055 .. 0.125
    assert set(col[23:62]) == {UPPER}  # 0.135 .. 0.515
    assert set(col[62:103]) == {PANTS}  # 0.525 .. 0.925
    assert set(col[103:110]) == {L_SHOE}  # image right = the person's left
    assert set(lab[103:110, 20:30].ravel()) == {R_SHOE}
    assert (fallback_labels(np.zeros((8, 4), bool)) == 0).all()


# --------------------------------------------------------------------------------------------
# Labelling rules on a drawn figure (a person facing the camera: their left is the image's right)
# --------------------------------------------------------------------------------------------

SKIN, RED, BLUE, BROWN, BLACK = (200, 150, 120), (200, 30, 30), (30, 40, 150), (90, 60, 30), (20, 20, 20)


def _landmarks() -> np.ndarray:
    p = np.zeros((33, 2))
    p[0] = (50, 20)  # nose
    p[1:4] = [(53, 17), (55, 17), (57, 17)]  # left eye
    p[4:7] = [(47, 17), (45, 17), (43, 17)]  # right eye
    p[7], p[8] = (60, 19), (40, 19)  # ears
    p[9], p[10] = (53, 26), (47, 26)  # mouth
    p[11], p[12] = (65, 40), (35, 40)  # shoulders
    p[13], p[14] = (72, 70), (28, 70)  # elbows
    p[15], p[16] = (75, 98), (25, 98)  # wrists
    p[[17, 19, 21]] = (76, 106)  # left hand points
    p[[18, 20, 22]] = (24, 106)
    p[23], p[24] = (60, 100), (40, 100)  # hips
    p[25], p[26] = (60, 140), (40, 140)  # knees
    p[27], p[28] = (60, 178), (40, 178)  # ankles
    p[29], p[30] = (60, 186), (40, 186)  # heels
    p[31], p[32] = (62, 190), (38, 190)  # toes
    return p


def _figure(forearm, shin) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 200x100 drawing: red torso and upper arms, ``forearm``-coloured forearms, skin hands and face,
    brown hair, blue thighs, ``shin``-coloured shins, black shoes; returns (image, person, landmarks)."""
    p = _landmarks()
    ys = np.arange(200)[:, None] + 0.5
    xs = np.arange(100)[None, :] + 0.5
    img = np.zeros((200, 100, 3), np.uint8)
    img[:] = (120, 160, 120)
    person = np.zeros((200, 100), bool)

    def paint(mask, colour):
        img[mask] = colour
        person[mask] = True

    def limb(a, b, r, colour):
        paint(segment_distance(ys, xs, p[a], p[b]) <= r, colour)

    paint(np.hypot(xs - 50, ys - 19.5) <= 13, BROWN)
    paint(((xs - 50) / 9) ** 2 + ((ys - 23) / 12) ** 2 <= 1, SKIN)  # the face
    limb(10, 9, 0, SKIN)
    paint(polygon_distance(ys, xs, p[[11, 12, 24, 23]]) == 0, RED)
    for sh, el, wr, hand in ((11, 13, 15, 17), (12, 14, 16, 18)):
        limb(sh, el, 4, RED)
        limb(el, wr, 3.5, forearm)
        limb(wr, hand, 3, SKIN)
    for hip, kn, an, toe in ((23, 25, 27, 31), (24, 26, 28, 32)):
        limb(hip, kn, 6, BLUE)
        limb(kn, an, 5, shin)
        limb(an, toe, 4, BLACK)
    return img, person, p


def test_short_sleeves_and_shorts_from_colours():
    img, person, p = _figure(forearm=SKIN, shin=SKIN)
    lab = labels_from_pose(img, person, p)
    assert (lab[~person] == 0).all()
    at = {  # (row, col) -> expected LIP id; pixel centres lie on the drawn bones
        (70, 50): UPPER,  # torso
        (55, 68): UPPER,  # left upper arm: red like the torso -> sleeve
        (55, 31): UPPER,
        (84, 73): L_ARM,  # left forearm: skin-coloured -> bare arm
        (84, 26): R_ARM,
        (102, 75): L_ARM,  # hands are never clothes
        (120, 59): PANTS,  # thighs
        (120, 40): PANTS,
        (159, 59): L_LEG,  # shins: skin -> shorts
        (159, 40): R_LEG,
        (184, 60): L_SHOE,
        (184, 39): R_SHOE,
        (22, 50): FACE,
        (7, 50): HAIR,  # above the face ellipse, inside the head
    }
    got = {k: int(lab[k]) for k in at}
    assert got == at
    # neither the face nor the hands are in the clothes mask
    cm = clothes_mask(lab)
    assert not cm[lab == FACE].any() and not cm[(lab == L_ARM) | (lab == R_ARM)].any()


def test_long_sleeves_and_trousers_from_colours():
    img, person, p = _figure(forearm=RED, shin=BLUE)
    lab = labels_from_pose(img, person, p)
    assert lab[84, 73] == UPPER and lab[84, 26] == UPPER  # forearms like the torso -> sleeves
    assert lab[102, 75] == L_ARM  # hands stay skin
    assert lab[159, 59] == PANTS and lab[159, 40] == PANTS


def test_limbs_seen_at_neither_end_are_left_out():
    img, person, p = _figure(forearm=SKIN, shin=SKIN)
    vis = np.ones(33)
    vis[23:33] = 0.1  # hips, knees, ankles and feet unseen (a portrait cut at the waist)
    lab = labels_from_pose(img, person, p, vis, min_visibility=0.5)
    assert not np.isin(lab, [PANTS, L_LEG, R_LEG, L_SHOE, R_SHOE]).any()
    assert lab[120, 59] != 0  # the pixels still belong to the person, to the bones that are seen
    assert lab[84, 73] == L_ARM  # the arms are unaffected


# --------------------------------------------------------------------------------------------
# mediapipe
# --------------------------------------------------------------------------------------------

needs_mediapipe = pytest.mark.skipif(
    pose.mediapipe_missing() is not None, reason=f"pose extra missing: {pose.mediapipe_missing()}"
)


def test_missing_mediapipe_is_a_config_error(monkeypatch):
    monkeypatch.setattr(pose, "mediapipe_missing", lambda: "mediapipe is not installed (pip ...)")
    with pytest.raises(ConfigError, match="parser 'pose': mediapipe is not installed"):
        create_parser("pose")


@pytest.fixture(scope="module")
def parser():
    if pose.mediapipe_missing():
        pytest.skip(f"pose extra missing: {pose.mediapipe_missing()}")
    p = create_parser("pose")
    yield p
    p.close()


def _photo(name):
    from dlcr.demo.realphoto import load_photo, photo_path

    if photo_path(name) is None:
        pytest.skip(f"photograph {name!r} not installed (photos extra)")
    return load_photo(name)


@needs_mediapipe
@pytest.mark.parametrize(
    # (face box, torso box) as (top, bottom, left, right), read off the photographs by eye
    "name, face, torso",
    [
        ("astronaut", (95, 150, 195, 250), (280, 480, 140, 280)),
        ("grace_hopper", (150, 330, 200, 340), (470, 600, 20, 500)),
    ],
)
def test_clothes_cover_the_torso_not_the_face(parser, name, face, torso):
    img = _photo(name)
    before = parser.fallback_count
    (lab,) = parser.parse([img])
    assert parser.fallback_count == before and parser.last_fallbacks == [False]  # a pose was found
    assert lab.shape == img.shape[:2] and lab.dtype == np.uint8
    cm = clothes_mask(lab)
    fy0, fy1, fx0, fx1 = face
    ty0, ty1, tx0, tx1 = torso
    assert cm[fy0:fy1, fx0:fx1].mean() == 0.0
    assert (lab[fy0:fy1, fx0:fx1] == FACE).mean() > 0.8
    assert cm[ty0:ty1, tx0:tx1].mean() > 0.95
    assert not cm[:20].any()  # the top rows are hair or background


@needs_mediapipe
def test_fallback_on_images_without_a_person_is_counted(parser):
    before, n_before = parser.fallback_count, parser.images_parsed
    blank = np.zeros((64, 32, 3), np.uint8)
    grey = np.full((48, 24, 3), 200, np.uint8)
    labs = parser.parse([blank, grey])
    assert parser.last_fallbacks == [True, True]
    assert parser.fallback_count == before + 2 and parser.images_parsed == n_before + 2
    assert all(not np.isin(lab, sorted(CLOTHES_LABELS)).any() for lab in labs)  # no person -> nothing


@needs_mediapipe
def test_parse_dataset_reports_fallbacks(parser, tmp_path):
    from PIL import Image

    from dlcr.io.images import write_png

    img = np.asarray(Image.fromarray(_photo("grace_hopper")).resize((128, 150)))
    write_png(tmp_path / "imgs" / "grace.png", img)
    write_png(tmp_path / "imgs" / "blank.png", np.zeros((64, 32, 3), np.uint8))
    rep = parse_dataset(parser, ["grace.png", "blank.png"], tmp_path / "imgs", tmp_path / "masks")
    assert (rep.done, rep.fallbacks, rep.empty, rep.empty_paths) == (2, 1, 1, ("blank.png",))
    assert "parser fallback 1" in rep.summary()
    assert rep.parser.startswith("pose:mediapipe-0.10.21")
    # a re-run parses nothing and so reports no fallback
    again = parse_dataset(parser, ["grace.png", "blank.png"], tmp_path / "imgs", tmp_path / "masks")
    assert (again.done, again.skipped_existing, again.fallbacks) == (0, 2, 0)
