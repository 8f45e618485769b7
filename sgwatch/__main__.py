from sgwatch.cli import main

main()
