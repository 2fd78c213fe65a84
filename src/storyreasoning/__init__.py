"""storyreasoning: grounded visual storytelling.

From a sequence of images, a chain-of-thought scene analysis (characters, objects,
settings, narrative structure, with boxes) and a story whose words are tied to image
regions by ``<gdi>/<gdo>/<gda>/<gdl>`` tags, with one identity per character across frames.

Sub-packages: :mod:`storyreasoning.format` (the language). Importing this package
stays light: no torch, transformers or OpenCV.
"""

__version__ = "0.1.0"
