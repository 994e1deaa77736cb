from mnist_infer.cli import main

main()
