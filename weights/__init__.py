"""The weights that ship with mnist-infer: installed as the package mnist_infer._shipped."""
