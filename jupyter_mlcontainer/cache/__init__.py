"""The model cache: one named volume (or host folder) mounted into every container kernel.

Each user's caches that can hold code or credentials live in their own private HOME there
(``paths.py``); the only shared files are verified model blobs in the store, written by the
keeper alone (``scripts/keeper.py``); each kernel links them into its user's hub cache at start
(``scripts/link_models.py``). ``volume.py`` sets a cache up for a kernel start (the trusted
helper image of ``helper_image.py``, the user's HOME, the keeper); ``host_folder.py`` does it for
a host folder shared by users with an engine each, whose keeper an admin runs.
docs/security.md ("The shared cache") says why.
"""
