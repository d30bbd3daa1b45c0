"""Files on disk: atomic writes (``atomic``), which files are images (``images``), BasicSR-layout LMDBs written,
read and checked (``lmdb``), a folder of images into one (``folder_lmdb``), the settings a resumable output was
made with (``resume``), the folders that ship inside the package and the option files among them (``shipped``)."""
