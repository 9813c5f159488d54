from crypto_lakehouse.cli import main

main()
