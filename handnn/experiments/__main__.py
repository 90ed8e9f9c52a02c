"""``python -m handnn.experiments NAME [options]``: the ``handnn-experiment`` command."""
from . import main

if __name__ == "__main__":  # importing this module (e.g. while walking the package) must not run anything
    raise SystemExit(main())
