"""Hand-editing of separation masks (Qt-free): edits as data, layers that sum to the mix,
undo records and local re-synthesis. See :mod:`engine.maskedit.layers`."""

from engine.maskedit.layers import EditRecord, LiveStroke, MaskLayers, normalised_masks
from engine.maskedit.ops import (
    BoxEdit,
    Brush,
    ContrastEdit,
    Edit,
    LassoEdit,
    MaskGrid,
    Stroke,
    edit_from_dict,
    edit_to_dict,
    footprint,
)

__all__ = [
    "Brush", "BoxEdit", "ContrastEdit", "Edit", "EditRecord", "LassoEdit", "LiveStroke", "MaskGrid", "MaskLayers",
    "Stroke", "edit_from_dict", "edit_to_dict", "footprint", "normalised_masks",
]
