"""Loss throughput and memory benchmark: pixcon vs the pure-PyTorch reference.

Thin wrapper around ``pixcon.bench`` so that ``python benchmarks/loss_throughput.py [options]``
works from a checkout (same options as ``python -m pixcon.bench``; see ``--help`` and
benchmarks/README.md). It needs pixcon installed (``pip install .``).
"""

import sys


def _load_main():
    try:
        from pixcon.bench import main
    except ImportError as e:
        sys.stderr.write(f"cannot import pixcon ({e}); install it first: pip install .\n")
        return None
    return main


if __name__ == "__main__":
    main = _load_main()
    sys.exit(1 if main is None else main())
