import sys

from fosgate_client.cli import main

sys.exit(main())
