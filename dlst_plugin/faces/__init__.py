"""Face detection backends, FFHQ-style alignment and paste-back (docs/design.md).

Nothing here is imported by ``import dlst_plugin``; the ``retinaface`` backend imports the
optional ``facexlib`` only when it is built, ``yunet`` needs OpenCV alone.
"""
