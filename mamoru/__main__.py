from mamoru.cli import main

main()
