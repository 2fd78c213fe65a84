"""``python -m storyreasoning``: the same as the ``storyreasoning`` command."""

from storyreasoning.cli import main

if __name__ == "__main__":
    main()
