"""Fixtures shared by the test modules live in their own files, one per real part."""
pytest_plugins = ["fixtures_emulator", "fixtures_comfyui", "fixtures_loopback", "fixtures_postgres", "fixtures_browser"]
