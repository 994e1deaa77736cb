"""The weights that ship with mnist-infer, with their metadata: read from this folder, the
same in a checkout, an unpacked sdist and an installed wheel."""
