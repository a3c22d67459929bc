from distillpipe.cli import main

main()
