from imgburst.cli.app import main

main()
