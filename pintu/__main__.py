from pintu.cli import main

main()
