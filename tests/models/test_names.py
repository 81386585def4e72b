"""Architecture names read from timm's and torchvision's source agree with what they register."""

from __future__ import annotations

import pytest
import timm
import torchvision

from vision_tl.models.names import (
    arch_suggestions,
    check_arch_name,
    timm_model_names,
    torchvision_model_names,
)


def test_scanned_timm_names_are_exactly_what_timm_accepts():
    scanned = timm_model_names()
    assert set(timm.list_models()) <= scanned
    assert [n for n in scanned if not timm.is_model(n)] == []  # the rest are timm's deprecated aliases


def test_scanned_torchvision_names_are_its_classification_builders():
    assert torchvision_model_names() == set(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.parametrize("typo, meant", [("resnt18", "resnet18"), ("convnxt_tiny", "convnext_tiny"),
                                         ("efficientnet-b0", "efficientnet_b0")])
def test_a_typo_gets_did_you_mean(typo, meant):
    assert arch_suggestions(typo)[0] == meant
    with pytest.raises(ValueError, match=f"did you mean {meant}"):
        check_arch_name(typo)


def test_known_names_with_or_without_a_tag_pass_and_torchvision_names_say_how():
    for name in ("resnet18", "resnet34.tv_in1k", "convnext_tiny"):
        check_arch_name(name)
    with pytest.raises(ValueError, match="torchvision.models.vit_b_16"):
        check_arch_name("vit_b_16")


def test_vision_learner_suggests_the_name_too(class_folder):
    from vision_tl import vision_learner
    from vision_tl.data.factories import ImageDataLoaders
    from vision_tl.data.item_tfms import Resize

    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.2, seed=0, item_tfms=Resize(32), num_workers=0)
    with pytest.raises(ValueError, match="did you mean resnet18"):
        vision_learner(dls, "resnt18", pretrained=False)
