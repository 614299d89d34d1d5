from imgburst.cli import main

main()
