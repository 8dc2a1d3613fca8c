from zooprobe.cli import main

main()
