"""SegFormer human-parsing / clothes checkpoints in the hub folder layout, tiny and random.

Three label schemes people point a segmentation parser at, each laid out like a public checkpoint:

- ``atr_segformer``: mattmdjaga/segformer_b2_clothes (SegFormer-B2 fine-tuned on ATR, the most used
  clothes segmenter): 18 classes ``Background, Hat, Hair, Sunglasses, Upper-clothes, Skirt, Pants,
  Dress, Belt, Left-shoe, Right-shoe, Face, Left-leg, Right-leg, Left-arm, Right-arm, Bag, Scarf``,
  ``preprocessor_config.json`` of a ``SegformerImageProcessor`` (512 x 512, ImageNet statistics),
  weights in ``model.safetensors``.
- ``lip_segformer``: a SegFormer fine-tuned on LIP (20 classes, LIP's names), saved by an older
  transformers: ``SegformerFeatureExtractor`` preprocessor file (``size`` a single number,
  ``reduce_labels``) and ``pytorch_model.bin`` (``torch.save`` of the state dict).
- ``fashionpedia_segformer``: sayeed99/segformer-b3-fashion: 47 classes, ``Everything Else``
  then Fashionpedia's 46 categories (``shirt, blouse``, ``top, t-shirt, sweatshirt``, ...,
  ``sleeve``, ``pocket``, ..., ``tassel``).

``config.json`` is written key by key as a saved ``SegformerConfig`` has it (string ids in
``id2label``), with tiny widths (two encoder blocks of 8 and 16 channels); the model is then built
from that file and its random weights written. ``winner`` makes the classifier say one class on
every pixel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

ATR_LABELS = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
)  # fmt: skip
LIP_LABELS = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks",
    "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg",
    "Left-shoe", "Right-shoe",
)  # fmt: skip
FASHIONPEDIA_LABELS = (
    "shirt, blouse", "top, t-shirt, sweatshirt", "sweater", "cardigan", "jacket", "vest", "pants",
    "shorts", "skirt", "coat", "dress", "jumpsuit", "cape", "glasses", "hat",
    "headband, head covering, hair accessory", "tie", "glove", "watch", "belt", "leg warmer",
    "tights, stockings", "sock", "shoe", "bag, wallet", "scarf", "umbrella", "hood", "collar",
    "lapel", "epaulette", "sleeve", "pocket", "neckline", "buckle", "zipper", "applique", "bead",
    "bow", "flower", "fringe", "ribbon", "rivet", "ruffle", "sequin", "tassel",
)  # fmt: skip

_MEAN, _STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _config(labels: Sequence[str], name_or_path: str) -> dict:
    return {
        "_name_or_path": name_or_path,
        "architectures": ["SegformerForSemanticSegmentation"],
        "attention_probs_dropout_prob": 0.0,
        "classifier_dropout_prob": 0.1,
        "decoder_hidden_size": 16,
        "depths": [1, 1],
        "downsampling_rates": [1, 4],
        "drop_path_rate": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_sizes": [8, 16],
        "id2label": {str(i): n for i, n in enumerate(labels)},
        "image_size": 224,
        "initializer_range": 0.02,
        "label2id": {n: i for i, n in enumerate(labels)},
        "layer_norm_eps": 1e-06,
        "mlp_ratios": [2, 2],
        "model_type": "segformer",
        "num_attention_heads": [1, 1],
        "num_channels": 3,
        "num_encoder_blocks": 2,
        "patch_sizes": [7, 3],
        "reshape_last_stage": True,
        "semantic_loss_ignore_index": 255,
        "sr_ratios": [2, 1],
        "strides": [4, 2],
        "torch_dtype": "float32",
        "transformers_version": "4.24.0",
    }


def _image_processor() -> dict:
    return {
        "do_normalize": True,
        "do_reduce_labels": False,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": _MEAN,
        "image_processor_type": "SegformerImageProcessor",
        "image_std": _STD,
        "resample": 2,
        "rescale_factor": 0.00392156862745098,
        "size": {"height": 512, "width": 512},
    }


def _feature_extractor() -> dict:
    return {
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "SegformerFeatureExtractor",
        "image_mean": _MEAN,
        "image_std": _STD,
        "reduce_labels": False,
        "resample": 2,
        "size": 512,
    }


def write_segformer(
    folder: str | Path,
    labels: Sequence[str],
    *,
    name_or_path: str = "nvidia/mit-b2",
    processor: str = "image_processor",
    weights: str = "safetensors",
    seed: int = 0,
    winner: int | None = None,
) -> Path:
    """Write ``config.json``, ``preprocessor_config.json`` and the weights of a tiny SegFormer."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(_config(labels, name_or_path), indent=2) + "\n")
    pre = _image_processor() if processor == "image_processor" else _feature_extractor()
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    torch.manual_seed(seed)
    model = SegformerForSemanticSegmentation(SegformerConfig.from_pretrained(out)).eval()
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if winner is not None:
        sd["decode_head.classifier.weight"].zero_()
        sd["decode_head.classifier.bias"].zero_()
        sd["decode_head.classifier.bias"][winner] = 3.0
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(sd, out / "pytorch_model.bin")
    return out


def atr_segformer(folder: str | Path, **kw) -> Path:
    """mattmdjaga/segformer_b2_clothes: ATR's 18 classes, image-processor file, safetensors."""
    return write_segformer(folder, ATR_LABELS, name_or_path="nvidia/mit-b2", **kw)


def lip_segformer(folder: str | Path, **kw) -> Path:
    """A LIP-labelled SegFormer saved by an older transformers (feature-extractor file, .bin)."""
    kw.setdefault("processor", "feature_extractor")
    kw.setdefault("weights", "bin")
    return write_segformer(folder, LIP_LABELS, name_or_path="nvidia/mit-b5", **kw)


def fashionpedia_segformer(folder: str | Path, **kw) -> Path:
    """sayeed99/segformer-b3-fashion: ``Everything Else`` + Fashionpedia's 46 categories."""
    return write_segformer(
        folder, ("Everything Else", *FASHIONPEDIA_LABELS), name_or_path="nvidia/mit-b3", **kw
    )
