import os

# Tests never read a developer's configuration by accident.
os.environ.setdefault("TOKENBANK_ENV", "test")
