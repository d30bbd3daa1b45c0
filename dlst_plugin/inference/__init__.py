"""Using trained networks: the face restorer (``face_restorer``: detect, align, restore, paste back), GFP-GAN's
``GFPGANer`` interface on it (``dlster``), restoring photo files into an output folder (``restore_files``),
(clean, degraded) pairs from a degrader into LMDBs (``pairs``) and exporting a restorer (``export``)."""
