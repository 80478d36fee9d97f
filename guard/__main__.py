"""``python -m guard``: the same entry point as the ``guard`` console script."""

from guard.entry.launch import main

if __name__ == "__main__":
    main()
