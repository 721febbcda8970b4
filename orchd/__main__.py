from orchd.daemon import main

main()
