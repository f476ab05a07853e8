"""The ops command-line tool (`python -m ops --help`)."""
