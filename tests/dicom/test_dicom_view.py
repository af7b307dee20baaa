"""view_of: the coded ViewPosition first, then the view code, then descriptions that name one view."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_helpers import make_dataset
from libs.dicom import instance_from_dataset, view_of
from libs.domain.study import View


@pytest.mark.parametrize(
    ("position", "view"),
    [("PA", View.PA), ("AP", View.AP), ("LL", View.LATERAL), ("RL", View.LATERAL), ("LATERAL", View.LATERAL),
     ("LAT", View.LATERAL), ("pa", View.PA), ("LLD", View.UNKNOWN), ("RAO", View.UNKNOWN)],
)
def test_view_position(position, view):
    assert view_of(make_dataset(ViewPosition=position)) is view


def test_lateral_view_position_gives_a_lateral_instance():
    instance = instance_from_dataset(make_dataset(ViewPosition="LL"))
    assert instance.view is View.LATERAL and not instance.view.is_frontal


def test_missing_view_position_falls_back_to_the_series_description():
    assert view_of(make_dataset(ViewPosition=None, SeriesDescription="CHEST LAT")) is View.LATERAL


@pytest.mark.parametrize(
    ("keyword", "text", "view"),
    [
        ("SeriesDescription", "Thorax p.a.", View.PA),
        ("SeriesDescription", "CHEST AP SUPINE", View.AP),
        ("ProtocolName", "THORAX_PA", View.PA),
        ("AcquisitionDeviceProcessingDescription", "CHEST LATERAL", View.LATERAL),
        ("SeriesDescription", "CHEST PA AND LAT", View.UNKNOWN),  # names two views: not trusted
        ("SeriesDescription", "PARENCHYMA", View.UNKNOWN),  # 'PA' only as a whole word
        ("SeriesDescription", "CHEST", View.UNKNOWN),
    ],
)
def test_text_fallbacks(keyword, text, view):
    assert view_of(make_dataset(ViewPosition=None, **{keyword: text})) is view


def test_an_ambiguous_description_defers_to_the_next_source():
    ds = make_dataset(ViewPosition=None, SeriesDescription="PA + LAT", ProtocolName="CHEST PA")
    assert view_of(ds) is View.PA


def test_view_code_sequence_meaning():
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "399348003", "SCT", "postero-anterior"
    ds = make_dataset(ViewPosition=None, SeriesDescription="CHEST LAT")
    ds.ViewCodeSequence = Sequence([code])
    assert view_of(ds) is View.PA  # the coded view outranks the free text


def test_image_laterality_is_not_a_view():
    assert view_of(make_dataset(ViewPosition=None, ImageLaterality="L")) is View.UNKNOWN


def test_an_oblique_view_position_is_not_upgraded_by_the_description():
    assert view_of(make_dataset(ViewPosition="LAO", SeriesDescription="CHEST PA")) is View.UNKNOWN


def test_nothing_at_all_is_unknown():
    assert view_of(make_dataset(ViewPosition=None)) is View.UNKNOWN
