"""The reference report model: training recipe, ONNX/INT8 export and evaluation (docs/model.md).

Needs the optional `.[train]` extra (torch 2.13 CPU, tokenizers, safetensors, pycocoevalcap, matplotlib);
the services never import this package: they run the exported bundle with onnxruntime (libs.bundle).
"""
