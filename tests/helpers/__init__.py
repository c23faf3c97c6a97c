"""Code shared by test modules: import from here, never from another ``test_*.py`` file (pytest would collect
that module's tests a second time under another name and couple two test files)."""
