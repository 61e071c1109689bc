"""Header checks (Patient's Age, View Position) and the model suggestion from Modality / Body Part Examined."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medimg.header_checks import check_header, header_fit, population_of, suggest_model
from medimg.io import MedicalImage
from medimg.spec import ModelSpec, PreprocessConfig


def _spec(name: str, data: str, modalities: tuple[str, ...], parts: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(name=name, title=name, architecture="smallcnn", labels=("a", "b"),
                     preprocess=PreprocessConfig(), modalities=modalities, body_parts=parts,
                     training={"data": data})


CXR = _spec("cxr", "shared/data/kermany-cxr", ("CR", "DX"), ("CHEST",))
BRAIN = _spec("brain", "shared/data/brain-mri", ("MR",), ("BRAIN", "HEAD"))
BUSI = _spec("busi", "shared/data/busi", ("US",), ("BREAST",))


def _image(age: int | None = None, **md: str) -> MedicalImage:
    return MedicalImage(pixels=np.zeros((8, 8), np.float32), format="dicom", metadata=dict(md),
                        patient_age_years=age)


def test_adult_chest_film_fails_the_paediatric_model() -> None:
    checks = {c.name: c for c in check_header(_image(45, Modality="CR", **{"View Position": "PA"}), CXR)}
    assert not checks["patient age"].passed and checks["patient age"].value == 45
    assert "children aged 1-5" in checks["patient age"].reason and "an adult" in checks["patient age"].reason
    assert checks["view position"].passed


@pytest.mark.parametrize(("age", "ok"), [(1, True), (5, True), (0, False), (6, False), (90, False)])
def test_age_range_is_inclusive(age: int, ok: bool) -> None:
    (check,) = check_header(_image(age), CXR)
    assert check.passed is ok
    if age == 90:
        assert "90 years or older" in check.reason


def test_lateral_view_fails_and_unknowns_are_not_checked() -> None:
    (check,) = check_header(_image(None, **{"View Position": "LL"}), CXR)
    assert check.name == "view position" and not check.passed
    assert check_header(_image(40), BRAIN) == ()  # no known population: nothing claimed
    raster = replace(_image(40), format="png")
    assert check_header(raster, CXR) == ()


def test_population_from_the_spec_wins() -> None:
    spec = replace(BRAIN, training={"data": "x", "population": {"age_years": [18, 90], "description": "adults"}})
    pop = population_of(spec)
    assert pop is not None and (pop.min_years, pop.max_years, pop.description) == (18, 90, "adults")
    (check,) = check_header(_image(12), spec)
    assert not check.passed


def test_suggestion_from_modality_and_body_part() -> None:
    mri = _image(None, Modality="MR", **{"Body Part Examined": "BRAIN"})
    assert suggest_model(mri, CXR, [CXR, BRAIN, BUSI]) is BRAIN
    assert suggest_model(mri, BRAIN, [CXR, BRAIN, BUSI]) is None
    us = _image(None, Modality="US")
    assert suggest_model(us, CXR, [CXR, BRAIN, BUSI]) is BUSI
    assert header_fit(replace(us, format="png"), BUSI) == 0
    assert suggest_model(replace(us, format="png"), CXR, [CXR, BUSI]) is None


def test_shipped_specs_know_the_chest_population(shared_data: Path) -> None:
    from medimg import load_image, load_spec

    weights = Path(__file__).resolve().parents[1] / "weights"
    if not (weights / "kermany_cxr_mobilenet_v2_224.json").exists():
        pytest.skip("shipped weights not present")
    spec = load_spec(weights / "kermany_cxr_mobilenet_v2_224.json")
    assert population_of(spec) is not None
    siim = next((shared_data / "dicom" / "cxr").glob("siim_*.dcm"))
    checks = {c.name: c for c in check_header(load_image(siim), spec)}
    assert not checks["patient age"].passed  # the SIIM adult CR
    child = load_image(shared_data / "dicom" / "cxr" / "dx_image.dcm")  # Patient's Age 005Y
    assert all(c.passed for c in check_header(child, spec) if c.name == "patient age")


def test_head_ct_dicom_suggests_the_shipped_head_ct_model(shared_data: Path) -> None:
    """Every slice of the shared head CT series (Modality CT, no Body Part Examined) under any other shipped model
    gets the head CT model, the only shipped model trained on CT; under the head CT model, none."""
    from medimg import list_weights, load_image, load_spec

    weights = Path(__file__).resolve().parents[1] / "weights"
    specs = [load_spec(p) for p in list_weights(weights)]
    head = [s for s in specs if s.name == "head_ct_mobilenet_v2_224"]
    files = sorted((shared_data / "dicom" / "head-ct").rglob("*.dcm"))
    if not head or not files:
        pytest.skip("the head CT model or the head CT series is not there")
    assert [s.name for s in specs if "CT" in s.modalities] == ["head_ct_mobilenet_v2_224"]
    for f in files[:: max(1, len(files) // 5)]:
        image = load_image(f)
        assert image.metadata.get("Modality") == "CT"
        for selected in specs:
            want = None if selected is head[0] else head[0]
            assert suggest_model(image, selected, specs) is want, (f.name, selected.name)
