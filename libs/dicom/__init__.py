"""DICOM -> validated, display-ready, model-sized image.

Pipeline (each step its own module):

* reading.read_dataset       bytes / file -> pydicom Dataset (rejects non-DICOM, cut-off files)
* validate.validate_dataset  chest CR/DX, single-frame grayscale, decodable transfer syntax
* instance / view            Dataset -> Instance (UIDs, modality, PA/AP/LATERAL, size)
* pixels.stored_values       Pixel Data -> stored values (see pixels.py for which plugin
                             decodes which transfer syntax: pydicom native,
                             pylibjpeg-libjpeg / -openjpeg / -rle, pyjpegls, Pillow; not gdcm)
* pixels.check_pixel_data    what intake runs instead of a decode: the pixel data is complete
* j2k_reduce                 JPEG 2000 decoded at the resolution the model needs (load.display_and_fit)
* display.decode_pixels      Modality LUT/rescale -> VOI LUT/window -> MONOCHROME1 inversion,
                             float32 [0, 1] with 1 = bright
* preprocess.preprocess      aspect-preserving Lanczos resize + centred zero padding, with the
                             ResizeGeometry that maps model boxes back to source pixels

Policy decisions: multi-frame images are rejected, not reduced to frame 1 (why: validate.py);
an absent BodyPartExamined is accepted; the view comes from ViewPosition first (view.py).
"""

from libs.dicom.display import decode_pixels
from libs.dicom.geometry import ResizeGeometry
from libs.dicom.instance import instance_from_dataset
from libs.dicom.load import load_for_model
from libs.dicom.preprocess import PreprocessedImage, preprocess
from libs.dicom.reading import read_dataset
from libs.dicom.validate import validate_dataset
from libs.dicom.view import view_of

__all__ = [
    "PreprocessedImage",
    "ResizeGeometry",
    "decode_pixels",
    "instance_from_dataset",
    "load_for_model",
    "preprocess",
    "read_dataset",
    "validate_dataset",
    "view_of",
]
