"""Command-line tools on top of the client skeletons: ``esc`` (see esc.py)."""
