from scanlab.cli import main

main()
