"""The commands of `mnist-infer`, one module each; cli.py gathers them into the group."""
