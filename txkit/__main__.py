from txkit.cli.main import main

main()
