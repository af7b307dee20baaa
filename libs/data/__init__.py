"""Dataset loaders for training and evaluating report models.

- `kermany`: the pediatric pneumonia/normal PNGs in /work/shared/data (image side of the reference model).
- `iu`: the IU / Open-i report corpus read from the torchxrayvision wheel (text side), its fixed split,
  and the IU X-ray layout (PNG images + report XML folder) for sites that have the images.
- `mimic`: the MIMIC-CXR-JPG layout (split/CheXpert/metadata CSVs, JPGs, report .txt files).

Every loader returns plain records (`libs.data.records`); nothing here needs torch.
"""
