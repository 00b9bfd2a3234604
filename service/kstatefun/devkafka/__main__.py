import sys

from kstatefun.devkafka.foreground import main

sys.exit(main())
